package paytool.${{ values.crate }}

import io.ktor.http.HttpStatusCode
import io.ktor.server.application.ApplicationCall
import java.security.MessageDigest

/**
 * Idempotency keys for POSTs, as the platform's Rust services take them (paykit's
 * idempotency): a request without `Idempotency-Key` is refused (400), the same key with the
 * same body is answered again with `Idempotency-Replayed: true`, the same key with another body
 * is refused (422). Keys are scoped to the caller and kept [RETENTION_HOURS].
 *
 * Unlike paykit's (which wraps any handler), this claims the key in the same database
 * transaction as the write it guards ([ItemStore.create]): a concurrent request with the same
 * key waits on the key's row until the first commits and then replays its answer, and a
 * request that fails rolls the key back with everything else, so no in-flight state is needed.
 * That holds while everything a POST changes lives in this service's database.
 */
object Idempotency {
    const val HEADER = "Idempotency-Key"
    const val REPLAYED_HEADER = "Idempotency-Replayed"
    const val KEY_MAX_CHARS = 255
    const val RETENTION_HOURS = 24
    /** How often keys past their retention are deleted. */
    const val PURGE_INTERVAL_MS = 600_000L

    /** The request's key: 1 to [KEY_MAX_CHARS] printable ASCII characters. */
    fun key(call: ApplicationCall): String {
        val raw = call.request.headers[HEADER]
            ?: throw Problem(
                HttpStatusCode.BadRequest, "idempotency-key-missing", "Idempotency-Key missing",
                "Every POST needs an Idempotency-Key header (1 to $KEY_MAX_CHARS characters; a UUID is a good key).",
            )
        val key = raw.trim()
        if (key.isEmpty() || key.length > KEY_MAX_CHARS || key.any { it.code !in 0x20..0x7e }) {
            throw Problem(
                HttpStatusCode.BadRequest, "idempotency-key-invalid", "Idempotency-Key invalid",
                "Idempotency-Key must be 1 to $KEY_MAX_CHARS printable ASCII characters.",
            )
        }
        return key
    }

    /** What the key is compared with: the body's SHA-256. */
    fun requestHash(body: String): String =
        MessageDigest.getInstance("SHA-256").digest(body.toByteArray()).joinToString("") { "%02x".format(it) }

    fun reused() = Problem(
        HttpStatusCode.UnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
        "This Idempotency-Key was used with another request body; use a new key for a new request.",
    )
}

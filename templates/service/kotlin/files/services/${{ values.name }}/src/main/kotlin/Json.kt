package paytool.${{ values.crate }}

import com.fasterxml.jackson.core.JacksonException
import com.fasterxml.jackson.databind.DeserializationFeature
import com.fasterxml.jackson.databind.SerializationFeature
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule
import com.fasterxml.jackson.module.kotlin.jacksonObjectMapper
import com.fasterxml.jackson.module.kotlin.readValue
import io.ktor.http.ContentType
import io.ktor.http.HttpStatusCode
import io.ktor.server.application.ApplicationCall
import io.ktor.server.request.contentType
import io.ktor.server.response.respondText

/** JSON in and out with Jackson: dates as RFC 3339 text, an unknown field refused. */
val json = jacksonObjectMapper()
    .registerModule(JavaTimeModule())
    .disable(SerializationFeature.WRITE_DATES_AS_TIMESTAMPS)
    .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)

suspend fun ApplicationCall.respondJson(value: Any, status: HttpStatusCode = HttpStatusCode.OK) =
    respondText(json.writeValueAsString(value), ContentType.Application.Json, status)

/** A body that is JSON already (an answer kept for an idempotency key). */
suspend fun ApplicationCall.respondRawJson(body: String, status: HttpStatusCode) =
    respondText(body, ContentType.Application.Json, status)

/**
 * A body read as text (kept whole for the idempotency key's request hash) as a `T`: 415
 * without `Content-Type: application/json`, 400 when it does not parse.
 */
inline fun <reified T> ApplicationCall.parseJson(text: String): T {
    if (!request.contentType().match(ContentType.Application.Json)) {
        throw Problem(
            HttpStatusCode.UnsupportedMediaType, "unsupported-media-type", "Unsupported media type",
            "Send the body as JSON with Content-Type: application/json.",
        )
    }
    return try {
        json.readValue<T>(text)
    } catch (error: JacksonException) {
        throw Problem(HttpStatusCode.BadRequest, "malformed-request", "Malformed request", error.originalMessage ?: "The body does not parse.")
    }
}

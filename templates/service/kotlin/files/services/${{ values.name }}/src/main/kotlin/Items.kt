package paytool.${{ values.crate }}

import com.fasterxml.jackson.annotation.JsonProperty
import io.ktor.http.HttpStatusCode
import io.ktor.server.request.receiveText
import io.ktor.server.response.header
import io.ktor.server.routing.Route
import io.ktor.server.routing.get
import io.ktor.server.routing.post
import io.ktor.server.routing.route
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import java.time.OffsetDateTime
import java.util.UUID
import javax.sql.DataSource

/**
 * `/v1/items`: the resource the contract (services/contracts/${{ values.name }}.yaml) documents.
 * Replace it with the service's own; keep the shape: every route takes the caller (a verified
 * bearer token), a POST takes an `Idempotency-Key`, input parses into domain types, one query
 * each. Items belong to the caller who made them: another caller's are not found.
 */
data class NewItem(val name: String)

data class Item(
    val id: UUID,
    val name: String,
    @get:JsonProperty("created_at") val createdAt: OffsetDateTime,
)

data class ItemPage(val items: List<Item>, val next: String?)

/** An item's name: trimmed, 1 to [MAX_CHARS] characters, no control characters. */
@JvmInline
value class ItemName private constructor(val value: String) {
    companion object {
        const val MAX_CHARS = 200

        fun parse(text: String): ItemName {
            val trimmed = text.trim()
            fun invalid(why: String): Nothing =
                throw Problem(HttpStatusCode.UnprocessableEntity, "validation", "Invalid request", why)
            if (trimmed.isEmpty()) invalid("name must not be empty")
            if (trimmed.codePointCount(0, trimmed.length) > MAX_CHARS) invalid("name must be at most $MAX_CHARS characters")
            if (trimmed.any { it.isISOControl() }) invalid("name must not contain control characters")
            return ItemName(trimmed)
        }
    }
}

/** How many items a page holds: 1 to [PAGE_LIMIT_MAX], [PAGE_LIMIT_DEFAULT] when not asked. */
const val PAGE_LIMIT_DEFAULT = 20
const val PAGE_LIMIT_MAX = 100

/** A created item's answer: the item's JSON, and whether it is the replay of an earlier one. */
data class Created(val body: String, val replayed: Boolean)

/** The items table, by JDBC on the pool (off the request threads). */
class ItemStore(private val dataSource: DataSource) {
    /**
     * Creates the caller's item under an idempotency key, in one transaction with the key (see
     * [Idempotency]): a key seen before answers what it answered then.
     */
    suspend fun create(owner: String, key: String, requestHash: String, name: ItemName): Created =
        withContext(Dispatchers.IO) {
            dataSource.connection.use { connection ->
                connection.autoCommit = false
                try {
                    val claimed = connection.prepareStatement(
                        """
                        INSERT INTO idempotency_keys (owner, endpoint, key, request_hash)
                        VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
                        """.trimIndent(),
                    ).use { statement ->
                        statement.setString(1, owner)
                        statement.setString(2, CREATE_ENDPOINT)
                        statement.setString(3, key)
                        statement.setString(4, requestHash)
                        statement.executeUpdate() == 1
                    }
                    if (!claimed) {
                        connection.rollback()
                        return@use replay(connection, owner, key, requestHash)
                    }
                    val item = connection.prepareStatement(
                        "INSERT INTO items (id, owner, name) VALUES (?, ?, ?) RETURNING id, name, created_at",
                    ).use { statement ->
                        statement.setObject(1, UUID.randomUUID())
                        statement.setString(2, owner)
                        statement.setString(3, name.value)
                        statement.executeQuery().use { rows ->
                            rows.next()
                            item(rows)
                        }
                    }
                    val body = json.writeValueAsString(item)
                    connection.prepareStatement(
                        "UPDATE idempotency_keys SET response_body = ? WHERE owner = ? AND endpoint = ? AND key = ?",
                    ).use { statement ->
                        statement.setString(1, body)
                        statement.setString(2, owner)
                        statement.setString(3, CREATE_ENDPOINT)
                        statement.setString(4, key)
                        check(statement.executeUpdate() == 1) { "the key claimed above is there" }
                    }
                    connection.commit()
                    Created(body, replayed = false)
                } catch (error: Throwable) {
                    connection.rollback()
                    throw error
                } finally {
                    connection.autoCommit = true
                }
            }
        }

    /** The answer kept for a key: its request must be the same one. */
    private fun replay(connection: java.sql.Connection, owner: String, key: String, requestHash: String): Created =
        connection.prepareStatement(
            "SELECT request_hash, response_body FROM idempotency_keys WHERE owner = ? AND endpoint = ? AND key = ?",
        ).use { statement ->
            statement.setString(1, owner)
            statement.setString(2, CREATE_ENDPOINT)
            statement.setString(3, key)
            statement.executeQuery().use { rows ->
                // Committed with its answer in the same transaction, so a row seen has one. A
                // row gone (purged between the two statements) is as good as a new key's
                // conflict: the client may retry.
                if (!rows.next()) {
                    throw Problem(
                        HttpStatusCode.Conflict, "idempotency-key-contended", "Idempotency-Key contended",
                        "This Idempotency-Key changed hands while the request was handled; retry it.",
                    )
                }
                if (rows.getString("request_hash") != requestHash) throw Idempotency.reused()
                Created(rows.getString("response_body"), replayed = true)
            }
        }

    /** Deletes the keys kept longer than [Idempotency.RETENTION_HOURS]. */
    fun purgeKeys(): Int = dataSource.connection.use { connection ->
        connection.prepareStatement(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => ?)",
        ).use { statement ->
            statement.setInt(1, Idempotency.RETENTION_HOURS)
            statement.executeUpdate()
        }
    }

    suspend fun find(owner: String, id: UUID): Item? = withContext(Dispatchers.IO) {
        dataSource.connection.use { connection ->
            connection.prepareStatement("SELECT id, name, created_at FROM items WHERE id = ? AND owner = ?").use { statement ->
                statement.setObject(1, id)
                statement.setString(2, owner)
                statement.executeQuery().use { rows -> if (rows.next()) item(rows) else null }
            }
        }
    }

    /** The caller's items, newest first, keyset-paginated: `after` is the last id of the page before. */
    suspend fun page(owner: String, limit: Int, after: UUID?): ItemPage = withContext(Dispatchers.IO) {
        dataSource.connection.use { connection ->
            connection.prepareStatement(
                """
                SELECT id, name, created_at FROM items
                WHERE owner = ? AND (?::uuid IS NULL OR seq < (SELECT seq FROM items WHERE id = ?::uuid))
                ORDER BY seq DESC LIMIT ?
                """.trimIndent(),
            ).use { statement ->
                statement.setString(1, owner)
                statement.setObject(2, after)
                statement.setObject(3, after)
                // One more than asked: whether it exists says whether there is a next page.
                statement.setInt(4, limit + 1)
                val items = mutableListOf<Item>()
                statement.executeQuery().use { rows -> while (rows.next()) items += item(rows) }
                val more = items.size > limit
                val page = items.take(limit)
                ItemPage(page, if (more) page.last().id.toString() else null)
            }
        }
    }

    companion object {
        /** The endpoint a key is scoped to, with the caller. */
        const val CREATE_ENDPOINT = "POST /v1/items"
    }

    private fun item(rows: java.sql.ResultSet) = Item(
        id = rows.getObject("id", UUID::class.java),
        name = rows.getString("name"),
        createdAt = rows.getObject("created_at", OffsetDateTime::class.java),
    )
}

fun Route.items(store: ItemStore, verifier: TokenVerifier) {
    route("/v1/items") {
        post {
            val caller = call.caller(verifier)
            val key = Idempotency.key(call)
            val text = call.receiveText()
            val new = call.parseJson<NewItem>(text)
            val created = store.create(caller.subject, key, Idempotency.requestHash(text), ItemName.parse(new.name))
            if (created.replayed) call.response.header(Idempotency.REPLAYED_HEADER, "true")
            call.respondRawJson(created.body, HttpStatusCode.Created)
        }
        get {
            val caller = call.caller(verifier)
            val limit = call.request.queryParameters["limit"]?.let {
                it.toIntOrNull() ?: throw invalid("limit must be a whole number")
            } ?: PAGE_LIMIT_DEFAULT
            if (limit !in 1..PAGE_LIMIT_MAX) throw invalid("limit must be between 1 and $PAGE_LIMIT_MAX")
            val after = call.request.queryParameters["after"]?.let {
                runCatching { UUID.fromString(it) }.getOrNull() ?: throw invalid("after is not a cursor this API gave")
            }
            call.respondJson(store.page(caller.subject, limit, after))
        }
        get("/{id}") {
            val caller = call.caller(verifier)
            val text = call.parameters["id"].orEmpty()
            val id = runCatching { UUID.fromString(text) }.getOrNull()
            val item = id?.let { store.find(caller.subject, it) }
                ?: throw Problem(HttpStatusCode.NotFound, "not-found", "Not found", "item $text does not exist.")
            call.respondJson(item)
        }
    }
}

private fun invalid(why: String) = Problem(HttpStatusCode.UnprocessableEntity, "validation", "Invalid request", why)

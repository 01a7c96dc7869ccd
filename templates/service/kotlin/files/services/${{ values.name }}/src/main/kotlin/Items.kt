package paytool.${{ values.crate }}

import com.fasterxml.jackson.annotation.JsonProperty
import io.ktor.http.HttpStatusCode
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
 * Replace it with the service's own; keep the shape: parse into domain types, one query each.
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

/** The items table, by JDBC on the pool (off the request threads). */
class ItemStore(private val dataSource: DataSource) {
    suspend fun create(name: ItemName): Item = withContext(Dispatchers.IO) {
        dataSource.connection.use { connection ->
            connection.prepareStatement(
                "INSERT INTO items (id, name) VALUES (?, ?) RETURNING id, name, created_at",
            ).use { statement ->
                statement.setObject(1, UUID.randomUUID())
                statement.setString(2, name.value)
                statement.executeQuery().use { rows ->
                    rows.next()
                    item(rows)
                }
            }
        }
    }

    suspend fun find(id: UUID): Item? = withContext(Dispatchers.IO) {
        dataSource.connection.use { connection ->
            connection.prepareStatement("SELECT id, name, created_at FROM items WHERE id = ?").use { statement ->
                statement.setObject(1, id)
                statement.executeQuery().use { rows -> if (rows.next()) item(rows) else null }
            }
        }
    }

    /** Newest first, keyset-paginated: `after` is the last id of the page before. */
    suspend fun page(limit: Int, after: UUID?): ItemPage = withContext(Dispatchers.IO) {
        dataSource.connection.use { connection ->
            connection.prepareStatement(
                """
                SELECT id, name, created_at FROM items
                WHERE ?::uuid IS NULL OR seq < (SELECT seq FROM items WHERE id = ?::uuid)
                ORDER BY seq DESC LIMIT ?
                """.trimIndent(),
            ).use { statement ->
                statement.setObject(1, after)
                statement.setObject(2, after)
                // One more than asked: whether it exists says whether there is a next page.
                statement.setInt(3, limit + 1)
                val items = mutableListOf<Item>()
                statement.executeQuery().use { rows -> while (rows.next()) items += item(rows) }
                val more = items.size > limit
                val page = items.take(limit)
                ItemPage(page, if (more) page.last().id.toString() else null)
            }
        }
    }

    private fun item(rows: java.sql.ResultSet) = Item(
        id = rows.getObject("id", UUID::class.java),
        name = rows.getString("name"),
        createdAt = rows.getObject("created_at", OffsetDateTime::class.java),
    )
}

fun Route.items(store: ItemStore) {
    route("/v1/items") {
        post {
            val new = call.receiveJson<NewItem>()
            call.respondJson(store.create(ItemName.parse(new.name)), HttpStatusCode.Created)
        }
        get {
            val limit = call.request.queryParameters["limit"]?.let {
                it.toIntOrNull() ?: throw invalid("limit must be a whole number")
            } ?: PAGE_LIMIT_DEFAULT
            if (limit !in 1..PAGE_LIMIT_MAX) throw invalid("limit must be between 1 and $PAGE_LIMIT_MAX")
            val after = call.request.queryParameters["after"]?.let {
                runCatching { UUID.fromString(it) }.getOrNull() ?: throw invalid("after is not a cursor this API gave")
            }
            call.respondJson(store.page(limit, after))
        }
        get("/{id}") {
            val text = call.parameters["id"].orEmpty()
            val id = runCatching { UUID.fromString(text) }.getOrNull()
            val item = id?.let { store.find(it) }
                ?: throw Problem(HttpStatusCode.NotFound, "not-found", "Not found", "item $text does not exist.")
            call.respondJson(item)
        }
    }
}

private fun invalid(why: String) = Problem(HttpStatusCode.UnprocessableEntity, "validation", "Invalid request", why)

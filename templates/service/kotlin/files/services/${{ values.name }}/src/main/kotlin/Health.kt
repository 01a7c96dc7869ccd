package paytool.${{ values.crate }}

import io.ktor.http.HttpStatusCode
import io.ktor.server.routing.Route
import io.ktor.server.routing.get
import javax.sql.DataSource

/** Ready when the database answers and the service is not draining (after SIGTERM). */
class Readiness(private val dataSource: DataSource) {
    @Volatile
    var draining = false
        private set

    fun drain() {
        draining = true
    }

    fun databaseAnswers(): Boolean = runCatching {
        dataSource.connection.use { it.isValid(CHECK_TIMEOUT_S) }
    }.getOrDefault(false)

    companion object {
        const val CHECK_TIMEOUT_S = 2
    }
}

fun Route.health(readiness: Readiness) {
    get("/health/live") {
        call.respondJson(mapOf("service" to SERVICE, "status" to "live"))
    }
    get("/health/ready") {
        when {
            readiness.draining -> call.respondJson(
                mapOf("service" to SERVICE, "status" to "draining"),
                HttpStatusCode.ServiceUnavailable,
            )
            readiness.databaseAnswers() -> call.respondJson(
                mapOf("service" to SERVICE, "status" to "ready", "checks" to mapOf("database" to "ok")),
            )
            else -> call.respondJson(
                mapOf("service" to SERVICE, "status" to "not_ready", "checks" to mapOf("database" to "unavailable")),
                HttpStatusCode.ServiceUnavailable,
            )
        }
    }
}

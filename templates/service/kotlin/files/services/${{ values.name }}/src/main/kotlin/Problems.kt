package paytool.${{ values.crate }}

import io.ktor.http.ContentType
import io.ktor.http.HttpStatusCode
import io.ktor.server.application.Application
import io.ktor.server.application.ApplicationCall
import io.ktor.server.application.install
import io.ktor.server.plugins.statuspages.StatusPages
import io.ktor.server.response.respondText
import io.ktor.util.AttributeKey
import org.slf4j.LoggerFactory

/** Where every problem type is documented; the same base as the platform's own services. */
const val PROBLEM_TYPE_BASE = "https://paytool.local.test/problems/"

/** A client error, answered as an RFC 9457 problem document. */
class Problem(val status: HttpStatusCode, val slug: String, val title: String, val detail: String) :
    RuntimeException(detail)

private val PROBLEM_JSON = ContentType.parse("application/problem+json")
private val PROBLEM_SENT = AttributeKey<Unit>("problem-sent")
private val log = LoggerFactory.getLogger("problems")

suspend fun ApplicationCall.respondProblem(problem: Problem) {
    val body = mapOf(
        "type" to PROBLEM_TYPE_BASE + problem.slug,
        "title" to problem.title,
        "status" to problem.status.value,
        "detail" to problem.detail,
    )
    attributes.put(PROBLEM_SENT, Unit)
    respondText(json.writeValueAsString(body), PROBLEM_JSON, problem.status)
}

/** Every error becomes a problem: 5xx causes are logged, never echoed. */
fun Application.installProblems() {
    install(StatusPages) {
        exception<Problem> { call, problem -> call.respondProblem(problem) }
        exception<Throwable> { call, cause ->
            log.error("unexpected error", cause)
            call.respondProblem(
                Problem(HttpStatusCode.InternalServerError, "internal", "Internal error", "Something went wrong on our side; it has been logged."),
            )
        }
        // A route that does not exist: Ktor's plain 404 becomes a problem (one of ours passes).
        status(HttpStatusCode.NotFound) { call, _ ->
            if (!call.attributes.contains(PROBLEM_SENT)) {
                call.respondProblem(Problem(HttpStatusCode.NotFound, "not-found", "Not found", "No such resource."))
            }
        }
    }
}

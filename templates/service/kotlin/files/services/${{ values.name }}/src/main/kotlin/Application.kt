package paytool.${{ values.crate }}

import io.ktor.server.application.Application
import io.ktor.server.routing.routing

/** The routes and the layers around them: problems, a span and a log line a request, RED metrics. */
fun Application.module(items: ItemStore, verifier: TokenVerifier, readiness: Readiness, telemetry: Telemetry, metrics: Metrics) {
    installProblems()
    telemetry.install(this)
    metrics.install(this)
    routing {
        health(readiness)
        metrics(metrics)
        items(items, verifier)
    }
}

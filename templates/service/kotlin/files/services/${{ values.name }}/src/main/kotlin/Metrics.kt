package paytool.${{ values.crate }}

import io.ktor.http.ContentType
import io.ktor.server.application.Application
import io.ktor.server.application.createApplicationPlugin
import io.ktor.server.application.install
import io.ktor.server.application.hooks.ResponseSent
import io.ktor.server.request.httpMethod
import io.ktor.server.response.respondText
import io.ktor.server.routing.Route
import io.ktor.server.routing.RoutingRoot
import io.ktor.server.routing.get
import io.ktor.util.AttributeKey
import io.micrometer.core.instrument.Counter
import io.micrometer.core.instrument.Timer
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics
import io.micrometer.core.instrument.binder.system.ProcessorMetrics
import io.micrometer.prometheusmetrics.PrometheusConfig
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry
import java.time.Duration

/**
 * Prometheus `/metrics`: RED by route template (`http_server_requests_total` and the
 * `http_server_request_duration_seconds` histogram, the names the Rust services and the SLOs
 * use) and the JVM's memory and CPU.
 */
class Metrics {
    val registry = PrometheusMeterRegistry(PrometheusConfig.DEFAULT).also {
        JvmMemoryMetrics().bindTo(it)
        ProcessorMetrics().bindTo(it)
    }

    fun install(application: Application) {
        // The route template (`/v1/items/{id}`), known once routing has chosen the route.
        application.monitor.subscribe(RoutingRoot.RoutingCallStarted) { call ->
            call.attributes.put(ROUTE, template(call.route.parent.toString()))
        }
        application.install(
            createApplicationPlugin("Metrics") {
                onCall { call -> call.attributes.put(STARTED_NS, System.nanoTime()) }
                // After the status pages: the status the client got.
                on(ResponseSent) { call ->
                    val started = call.attributes.getOrNull(STARTED_NS) ?: return@on
                    val route = call.attributes.getOrNull(ROUTE) ?: "unmatched"
                    val status = (call.response.status()?.value ?: 0).toString()
                    val method = call.request.httpMethod.value
                    Counter.builder("http.server.requests")
                        .tags("method", method, "route", route, "status", status)
                        .register(registry)
                        .increment()
                    Timer.builder("http.server.request.duration")
                        .tags("method", method, "route", route)
                        .serviceLevelObjectives(*BUCKETS)
                        .register(registry)
                        .record(Duration.ofNanos(System.nanoTime() - started))
                }
            },
        )
    }

    companion object {
        private val ROUTE = AttributeKey<String>("route")
        private val STARTED_NS = AttributeKey<Long>("metrics-started-ns")
        private val BUCKETS = listOf(5L, 10L, 25L, 50L, 100L, 300L, 1_000L, 5_000L)
            .map { Duration.ofMillis(it) }
            .toTypedArray()

        /** `/v1/items/{id}/(method:GET)` → `/v1/items/{id}`. */
        fun template(route: String): String =
            route.split('/').filterNot { it.startsWith("(") }.joinToString("/").ifEmpty { "/" }
    }
}

fun Route.metrics(metrics: Metrics) {
    get("/metrics") {
        call.respondText(metrics.registry.scrape(), ContentType.parse("text/plain; version=0.0.4; charset=utf-8"))
    }
}

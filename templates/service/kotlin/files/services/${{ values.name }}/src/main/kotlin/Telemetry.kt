package paytool.${{ values.crate }}

import io.ktor.server.application.Application
import io.ktor.server.application.createApplicationPlugin
import io.ktor.server.application.install
import io.ktor.server.application.hooks.ResponseSent
import io.ktor.server.request.httpMethod
import io.ktor.server.request.path
import io.opentelemetry.api.common.Attributes
import io.opentelemetry.api.trace.Span
import io.opentelemetry.api.trace.SpanKind
import io.opentelemetry.api.trace.StatusCode
import io.opentelemetry.api.trace.Tracer
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator
import io.opentelemetry.context.Context
import io.opentelemetry.context.propagation.TextMapGetter
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporter
import io.opentelemetry.sdk.OpenTelemetrySdk
import io.opentelemetry.sdk.resources.Resource
import io.opentelemetry.sdk.trace.SdkTracerProvider
import io.opentelemetry.sdk.trace.export.BatchSpanProcessor
import io.opentelemetry.sdk.trace.samplers.Sampler
import net.logstash.logback.argument.StructuredArguments.kv
import org.slf4j.LoggerFactory
import org.slf4j.MDC
import java.util.concurrent.TimeUnit

/**
 * OpenTelemetry traces over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (none without it), sampled
 * like the Rust services (`OTEL_TRACES_SAMPLER_ARG`: the share of traces this service starts;
 * a caller's `traceparent` decides for its own), and one JSON log line a request with its trace
 * and span ids.
 */
class Telemetry private constructor(private val sdk: OpenTelemetrySdk?) : AutoCloseable {
    private val tracer: Tracer? = sdk?.getTracer(SERVICE)

    fun install(application: Application) {
        application.install(
            createApplicationPlugin("Telemetry") {
                onCall { call ->
                    call.attributes.put(STARTED_NS, System.nanoTime())
                    val method = call.request.httpMethod.value
                    val parent = W3CTraceContextPropagator.getInstance().extract(Context.root(), call, HeaderGetter)
                    val span = tracer?.spanBuilder("$method ${call.request.path()}")
                        ?.setParent(parent)
                        ?.setSpanKind(SpanKind.SERVER)
                        ?.setAttribute("http.request.method", method)
                        ?.setAttribute("url.path", call.request.path())
                        ?.startSpan()
                        ?: return@onCall
                    call.attributes.put(SPAN, span)
                    MDC.put("trace_id", span.spanContext.traceId)
                    MDC.put("span_id", span.spanContext.spanId)
                }
                // After the status pages: the status the client got.
                on(ResponseSent) { call ->
                    val status = call.response.status()?.value ?: 0
                    val span = call.attributes.getOrNull(SPAN)
                    span?.setAttribute("http.response.status_code", status.toLong())
                    if (status >= 500) span?.setStatus(StatusCode.ERROR)
                    span?.end()
                    val started = call.attributes.getOrNull(STARTED_NS) ?: System.nanoTime()
                    log.info(
                        "answered",
                        kv("method", call.request.httpMethod.value),
                        kv("path", call.request.path()),
                        kv("status", status),
                        kv("latency_ms", (System.nanoTime() - started) / 1e6),
                    )
                    MDC.remove("trace_id")
                    MDC.remove("span_id")
                }
            },
        )
    }

    override fun close() {
        sdk?.sdkTracerProvider?.shutdown()?.join(CLOSE_TIMEOUT_MS, TimeUnit.MILLISECONDS)
    }

    private object HeaderGetter : TextMapGetter<io.ktor.server.application.ApplicationCall> {
        override fun keys(carrier: io.ktor.server.application.ApplicationCall): Iterable<String> =
            carrier.request.headers.names()

        override fun get(carrier: io.ktor.server.application.ApplicationCall?, key: String): String? =
            carrier?.request?.headers?.get(key)
    }

    companion object {
        /** Spans still queued at shutdown get this long to leave. */
        const val CLOSE_TIMEOUT_MS = 2_000L
        private val SPAN = io.ktor.util.AttributeKey<Span>("span")
        private val STARTED_NS = io.ktor.util.AttributeKey<Long>("started-ns")
        private val log = LoggerFactory.getLogger("http")

        fun fromEnvironment(env: Map<String, String> = System.getenv()): Telemetry {
            val endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"] ?: return Telemetry(null)
            val ratio = env["OTEL_TRACES_SAMPLER_ARG"]?.toDoubleOrNull()?.coerceIn(0.0, 1.0) ?: 1.0
            val exporter = OtlpHttpSpanExporter.builder()
                .setEndpoint(endpoint.trimEnd('/') + "/v1/traces")
                .build()
            val resource = Resource.getDefault().merge(
                Resource.create(Attributes.of(io.opentelemetry.api.common.AttributeKey.stringKey("service.name"), SERVICE)),
            )
            val provider = SdkTracerProvider.builder()
                .setResource(resource)
                .setSampler(Sampler.parentBased(Sampler.traceIdRatioBased(ratio)))
                .addSpanProcessor(BatchSpanProcessor.builder(exporter).build())
                .build()
            return Telemetry(OpenTelemetrySdk.builder().setTracerProvider(provider).build())
        }
    }
}

package paytool.${{ values.crate }}

import com.zaxxer.hikari.HikariConfig
import com.zaxxer.hikari.HikariDataSource
import io.ktor.server.engine.EmbeddedServer
import io.ktor.server.engine.embeddedServer
import io.ktor.server.netty.Netty
import io.ktor.server.netty.NettyApplicationEngine
import kotlinx.coroutines.runBlocking
import org.flywaydb.core.Flyway
import org.slf4j.LoggerFactory
import java.util.concurrent.Executors
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.TimeUnit

/**
 * Builds the service once, for `main` and for the tests alike: the pool, the migrations, the
 * server. [port] is the bound port (the OS's choice with port 0).
 */
class Service private constructor(
    private val server: EmbeddedServer<NettyApplicationEngine, NettyApplicationEngine.Configuration>,
    private val dataSource: HikariDataSource,
    private val readiness: Readiness,
    private val telemetry: Telemetry,
    private val purge: ScheduledExecutorService,
) {
    val port: Int
        get() = runBlocking { server.engine.resolvedConnectors().first().port }

    fun start(): Service {
        server.start(wait = false)
        return this
    }

    /**
     * Readiness fails first; the server stops once no request has arrived for [DRAIN_QUIET_MS],
     * and after [DRAIN_MS] whatever is still in flight; then everything closes.
     */
    fun stop() {
        readiness.drain()
        server.stop(gracePeriodMillis = DRAIN_QUIET_MS, timeoutMillis = DRAIN_MS)
        purge.shutdownNow()
        dataSource.close()
        telemetry.close()
    }

    /** Serves until SIGTERM (the JVM's shutdown hook), then [stop]s. */
    fun runUntilStopped() {
        Runtime.getRuntime().addShutdownHook(Thread { stop() })
        server.start(wait = true)
    }

    companion object {
        private val log = LoggerFactory.getLogger(Service::class.java)

        /** The drain after SIGTERM, bounded like the Rust services' (5 s). */
        const val DRAIN_MS = 5_000L
        const val DRAIN_QUIET_MS = 500L
        /** Connections in the pool, and how long a request waits for one. */
        const val POOL_MAX = 5
        const val POOL_ACQUIRE_TIMEOUT_MS = 5_000L

        fun build(settings: Settings): Service {
            val dataSource = HikariDataSource(
                HikariConfig().apply {
                    jdbcUrl = settings.database.jdbcUrl
                    username = settings.database.user
                    password = settings.database.password.value
                    maximumPoolSize = POOL_MAX
                    connectionTimeout = POOL_ACQUIRE_TIMEOUT_MS
                    poolName = SERVICE
                },
            )
            Flyway.configure().dataSource(dataSource).load().migrate()
            val readiness = Readiness(dataSource)
            val telemetry = Telemetry.fromEnvironment()
            val metrics = Metrics()
            val items = ItemStore(dataSource)
            val verifier = TokenVerifier(settings.auth)
            val server = embeddedServer(Netty, port = settings.port, host = settings.host) {
                module(items, verifier, readiness, telemetry, metrics)
            }
            // Idempotency keys past their retention go; a failed round is logged and the next
            // one tries again.
            val purge = Executors.newSingleThreadScheduledExecutor { Thread(it, "idempotency-purge").apply { isDaemon = true } }
            purge.scheduleWithFixedDelay(
                { runCatching { items.purgeKeys() }.onFailure { log.warn("idempotency keys not purged", it) } },
                Idempotency.PURGE_INTERVAL_MS, Idempotency.PURGE_INTERVAL_MS, TimeUnit.MILLISECONDS,
            )
            return Service(server, dataSource, readiness, telemetry, purge)
        }
    }
}

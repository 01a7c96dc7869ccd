package paytool.${{ values.crate }}

import com.zaxxer.hikari.HikariConfig
import com.zaxxer.hikari.HikariDataSource
import io.ktor.server.engine.EmbeddedServer
import io.ktor.server.engine.embeddedServer
import io.ktor.server.netty.Netty
import io.ktor.server.netty.NettyApplicationEngine
import kotlinx.coroutines.runBlocking
import org.flywaydb.core.Flyway

/**
 * Builds the service once, for `main` and for the tests alike: the pool, the migrations, the
 * server. [port] is the bound port (the OS's choice with port 0).
 */
class Service private constructor(
    private val server: EmbeddedServer<NettyApplicationEngine, NettyApplicationEngine.Configuration>,
    private val dataSource: HikariDataSource,
    private val readiness: Readiness,
    private val telemetry: Telemetry,
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
        dataSource.close()
        telemetry.close()
    }

    /** Serves until SIGTERM (the JVM's shutdown hook), then [stop]s. */
    fun runUntilStopped() {
        Runtime.getRuntime().addShutdownHook(Thread { stop() })
        server.start(wait = true)
    }

    companion object {
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
            val server = embeddedServer(Netty, port = settings.port, host = settings.host) {
                module(ItemStore(dataSource), readiness, telemetry, metrics)
            }
            return Service(server, dataSource, readiness, telemetry)
        }
    }
}

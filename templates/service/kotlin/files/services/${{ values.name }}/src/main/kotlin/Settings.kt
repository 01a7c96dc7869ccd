package paytool.${{ values.crate }}

import java.net.URI

/** The service's name: its Prometheus job, its spans' service.name. */
const val SERVICE = "${{ values.name }}"

/**
 * Typed settings from the environment, as `paytool up` sets them (APP__SECTION__KEY, the same
 * names as the Rust services). The database URL is a postgres:// URL that carries the role and its password.
 */
data class Settings(
    val host: String,
    val port: Int,
    val database: Database,
    val auth: Auth,
) {
    data class Database(val jdbcUrl: String, val user: String, val password: Secret)

    /** Whose bearer tokens it accepts: the realm's issuer and keys, its own name as audience. */
    data class Auth(val issuer: String, val jwksUrl: String, val audience: String)

    /** A value that never prints itself. */
    class Secret(val value: String) {
        override fun toString() = "***"
    }

    companion object {
        fun fromEnvironment(env: Map<String, String> = System.getenv()): Settings = Settings(
            host = env["APP__HTTP__HOST"] ?: "127.0.0.1",
            port = env["APP__HTTP__PORT"]?.toInt() ?: 0,
            database = parseDatabaseUrl(
                env["APP__DATABASE__URL"] ?: error("APP__DATABASE__URL is not set"),
            ),
            auth = Auth(
                issuer = env["APP__AUTH__ISSUER"] ?: error("APP__AUTH__ISSUER is not set"),
                jwksUrl = env["APP__AUTH__JWKS_URL"] ?: error("APP__AUTH__JWKS_URL is not set"),
                audience = env["APP__AUTH__AUDIENCE"] ?: SERVICE,
            ),
        )

        fun parseDatabaseUrl(url: String): Database {
            val uri = URI(url)
            require(uri.scheme == "postgres" || uri.scheme == "postgresql") { "not a postgres:// URL" }
            val (user, password) = (uri.rawUserInfo ?: error("the database URL names no user"))
                .split(":", limit = 2)
                .let { it[0] to it.getOrElse(1) { "" } }
            val port = if (uri.port == -1) 5432 else uri.port
            return Database("jdbc:postgresql://${uri.host}:$port${uri.path}", user, Secret(password))
        }
    }
}

package paytool.${{ values.crate }}

import com.nimbusds.jose.JOSEException
import com.nimbusds.jose.JWSAlgorithm
import com.nimbusds.jose.KeySourceException
import com.nimbusds.jose.jwk.source.JWKSourceBuilder
import com.nimbusds.jose.proc.BadJOSEException
import com.nimbusds.jose.proc.JWSVerificationKeySelector
import com.nimbusds.jose.proc.SecurityContext
import com.nimbusds.jose.util.DefaultResourceRetriever
import com.nimbusds.jwt.JWTClaimsSet
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier
import com.nimbusds.jwt.proc.DefaultJWTProcessor
import io.ktor.http.HttpHeaders
import io.ktor.http.HttpStatusCode
import io.ktor.server.application.ApplicationCall
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext
import java.net.URI
import java.text.ParseException

/** Who made a request: the verified token's subject (a user's or a service account's id). */
data class Caller(val subject: String)

/**
 * Bearer tokens of the platform's realm, verified here with Nimbus JOSE + JWT: an RS256
 * signature by one of the realm's keys (fetched from its JWKS, cached, fetched again for an
 * unknown `kid`), `iss` the realm, `aud` naming this service, `exp` and `nbf` within [LEEWAY_S].
 * `alg: none` and HMAC never pass: only RS256 keys from the JWKS are ever used.
 */
class TokenVerifier(auth: Settings.Auth) {
    private val processor = DefaultJWTProcessor<SecurityContext>().apply {
        val keys = JWKSourceBuilder.create<SecurityContext>(
            URI(auth.jwksUrl).toURL(),
            DefaultResourceRetriever(KEYS_TIMEOUT_MS, KEYS_TIMEOUT_MS, KEYS_SIZE_LIMIT_BYTES),
        ).build()
        jwsKeySelector = JWSVerificationKeySelector(JWSAlgorithm.RS256, keys)
        jwtClaimsSetVerifier = DefaultJWTClaimsVerifier<SecurityContext>(
            auth.audience,
            JWTClaimsSet.Builder().issuer(auth.issuer).build(),
            setOf("sub", "exp", "iss", "aud"),
        ).apply { maxClockSkew = LEEWAY_S }
    }

    fun verify(token: String): Caller = try {
        Caller(processor.process(token, null).subject)
    } catch (unavailable: KeySourceException) {
        throw Problem(
            HttpStatusCode.ServiceUnavailable, "auth-unavailable", "Authentication temporarily unavailable",
            "The token's signing keys cannot be fetched right now; retry shortly.",
        )
    } catch (rejected: BadJOSEException) {
        throw invalidToken(rejected.message)
    } catch (rejected: JOSEException) {
        throw invalidToken(rejected.message)
    } catch (malformed: ParseException) {
        throw invalidToken("it is not a signed JWT")
    }

    companion object {
        const val KEYS_TIMEOUT_MS = 3_000
        const val KEYS_SIZE_LIMIT_BYTES = 64 * 1024
        /** Clock skew tolerated on `exp` and `nbf`, as the Rust services tolerate. */
        const val LEEWAY_S = 5

        private fun invalidToken(reason: String?) = Problem(
            HttpStatusCode.Unauthorized, "invalid-token", "Invalid token",
            "The bearer token was rejected: ${reason ?: "it does not verify"}.",
        )
    }
}

/** The caller of this request, from its `Authorization: Bearer` token, or a 401 problem. */
suspend fun ApplicationCall.caller(verifier: TokenVerifier): Caller {
    val header = request.headers[HttpHeaders.Authorization]
        ?: throw Problem(
            HttpStatusCode.Unauthorized, "unauthenticated", "Authentication required",
            "Send a bearer token from the paytool realm in the Authorization header.",
        )
    val token = header.takeIf { it.startsWith("Bearer ", ignoreCase = true) }?.substring(7)?.trim()
    if (token.isNullOrEmpty()) {
        throw Problem(
            HttpStatusCode.Unauthorized, "invalid-token", "Invalid token",
            "The Authorization header is not a bearer token.",
        )
    }
    // A key fetch is blocking I/O: off the request threads.
    return withContext(Dispatchers.IO) { verifier.verify(token) }
}

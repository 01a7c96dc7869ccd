package paytool.${{ values.crate }}

import com.fasterxml.jackson.databind.JsonNode
import com.fasterxml.jackson.databind.ObjectMapper
import com.fasterxml.jackson.databind.node.ObjectNode
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory
import com.networknt.schema.JsonSchemaFactory
import com.networknt.schema.SpecVersion
import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.sql.DriverManager
import java.util.UUID
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/**
 * Black-box tests over HTTP: each starts the service on port 0 with a fresh database on the
 * real PostgreSQL that scripts/test.sh starts (PAYTOOL_TEST_DATABASE_URL), calls it with real
 * tokens from the platform's Keycloak (the service's own client, which `paytool up` makes;
 * PAYTOOL_TEST_STATUS says where), and checks every answer against the contract
 * (services/contracts/${{ values.name }}.yaml).
 */
class ItemsTest {
    private val json = ObjectMapper()
    private val client: HttpClient = HttpClient.newHttpClient()

    private class App(val base: String, val service: Service)

    private fun spawnApp(): App {
        val admin = System.getenv("PAYTOOL_TEST_DATABASE_URL")
            ?: error("PAYTOOL_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which starts a real PostgreSQL")
        val name = "test_" + UUID.randomUUID().toString().replace("-", "")
        val database = Settings.parseDatabaseUrl(admin)
        DriverManager.getConnection(database.jdbcUrl, database.user, database.password.value).use {
            it.createStatement().execute("CREATE DATABASE \"$name\"")
        }
        val url = admin.substringBeforeLast('/') + "/" + name
        val service = Service.build(Settings("127.0.0.1", 0, Settings.parseDatabaseUrl(url), authSettings())).start()
        return App("http://127.0.0.1:${service.port}", service)
    }

    /** Sent with this service's own token unless the request has an Authorization already. */
    private fun send(request: HttpRequest.Builder): HttpResponse<String> {
        val built = request.build()
        val authorized = if (built.headers().firstValue("authorization").isPresent) built
        else HttpRequest.newBuilder(built) { _, _ -> true }.header("authorization", "Bearer $token").build()
        return client.send(authorized, HttpResponse.BodyHandlers.ofString())
    }

    /** Checks the answer against the contract: documented status, content type and body schema. */
    private fun checked(method: String, template: String, response: HttpResponse<String>): JsonNode {
        val operation = contract.path("paths").path(template).path(method)
        assertTrue(operation.isObject, "$method $template is in the contract")
        var documented = operation.path("responses").path(response.statusCode().toString())
        assertTrue(documented.isObject, "$method $template documents ${response.statusCode()}: ${response.body()}")
        documented.path("\$ref").textValue()?.let { documented = contract.at(it.removePrefix("#")) }
        val type = response.headers().firstValue("content-type").orElse("").substringBefore(';').trim()
        val schema = documented.path("content").path(type).path("schema")
        assertTrue(schema.isObject, "$method $template ${response.statusCode()} documents a $type body")
        val root = (schema.deepCopy<JsonNode>() as ObjectNode).also { it.set<JsonNode>("components", contract.path("components")) }
        val body = json.readTree(response.body())
        val errors = schemas.getSchema(root).validate(body)
        assertTrue(errors.isEmpty(), "$method $template ${response.statusCode()} breaks the contract: $errors\n$body")
        return body
    }

    private fun create(app: App, body: String, key: String? = UUID.randomUUID().toString()) = send(
        HttpRequest.newBuilder(URI("${app.base}/v1/items"))
            .header("content-type", "application/json")
            .apply { if (key != null) header("idempotency-key", key) }
            .POST(HttpRequest.BodyPublishers.ofString(body)),
    ).let { it.statusCode() to checked("post", "/v1/items", it) }

    private fun list(app: App, query: String = "") =
        send(HttpRequest.newBuilder(URI("${app.base}/v1/items$query")).GET())
            .let { it.statusCode() to checked("get", "/v1/items", it) }

    @Test
    fun `the service is ready when its database answers`() {
        val app = spawnApp()
        val response = send(HttpRequest.newBuilder(URI("${app.base}/health/ready")).GET())
        assertEquals(200, response.statusCode())
        val body = checked("get", "/health/ready", response)
        assertEquals("${{ values.name }}", body.path("service").textValue())
        assertEquals("ok", body.path("checks").path("database").textValue())
        app.service.stop()
    }

    @Test
    fun `an item created can be read back by its id`() {
        val app = spawnApp()
        val (status, created) = create(app, """{"name": "  first  "}""")
        assertEquals(201, status)
        assertEquals("first", created.path("name").textValue(), "the name is stored trimmed")
        val id = created.path("id").textValue()
        val response = send(HttpRequest.newBuilder(URI("${app.base}/v1/items/$id")).GET())
        assertEquals(200, response.statusCode())
        assertEquals(created, checked("get", "/v1/items/{id}", response))
        app.service.stop()
    }

    @Test
    fun `an invalid item is refused with a problem and nothing is stored`() {
        val app = spawnApp()
        val (status, problem) = create(app, """{"name": "   "}""")
        assertEquals(422, status)
        assertEquals(PROBLEM_TYPE_BASE + "validation", problem.path("type").textValue())
        assertEquals(400, create(app, """{"title": "x"}""").first, "an unknown field is refused")
        assertEquals(0, list(app).second.path("items").size(), "nothing was stored")
        app.service.stop()
    }

    @Test
    fun `the list is paged newest first and every item appears once`() {
        val app = spawnApp()
        repeat(5) { assertEquals(201, create(app, """{"name": "item $it"}""").first) }
        val seen = mutableListOf<String>()
        var query: String? = "?limit=2"
        var pages = 0
        while (query != null && pages < 10) {
            val (status, page) = list(app, query)
            assertEquals(200, status)
            assertTrue(page.path("items").size() <= 2, "a page holds at most its limit")
            page.path("items").forEach { seen += it.path("name").textValue() }
            query = page.path("next").textValue()?.let { "?limit=2&after=$it" }
            pages += 1
        }
        assertEquals(listOf("item 4", "item 3", "item 2", "item 1", "item 0"), seen)
        app.service.stop()
    }

    @Test
    fun `a limit out of range is refused`() {
        val app = spawnApp()
        assertEquals(422, list(app, "?limit=0").first)
        assertEquals(422, list(app, "?limit=101").first)
        app.service.stop()
    }

    @Test
    fun `an unknown item is not found`() {
        val app = spawnApp()
        for (id in listOf(UUID.randomUUID().toString(), "not-an-id")) {
            val response = send(HttpRequest.newBuilder(URI("${app.base}/v1/items/$id")).GET())
            assertEquals(404, response.statusCode())
            checked("get", "/v1/items/{id}", response)
        }
        app.service.stop()
    }

    @Test
    fun `a request without a token or with one meant for another service is refused`() {
        val app = spawnApp()
        val bare = client.send(
            HttpRequest.newBuilder(URI("${app.base}/v1/items")).GET().build(),
            HttpResponse.BodyHandlers.ofString(),
        )
        assertEquals(401, bare.statusCode())
        assertEquals(PROBLEM_TYPE_BASE + "unauthenticated", checked("get", "/v1/items", bare).path("type").textValue())
        // A real token of the realm, but its audience is not this service.
        val elsewhere = send(
            HttpRequest.newBuilder(URI("${app.base}/v1/items"))
                .header("authorization", "Bearer ${clientToken("paytool-operator")}")
                .header("content-type", "application/json")
                .header("idempotency-key", UUID.randomUUID().toString())
                .POST(HttpRequest.BodyPublishers.ofString("""{"name": "not mine"}""")),
        )
        assertEquals(401, elsewhere.statusCode())
        assertEquals(PROBLEM_TYPE_BASE + "invalid-token", checked("post", "/v1/items", elsewhere).path("type").textValue())
        assertEquals(0, list(app).second.path("items").size(), "nothing was stored")
        app.service.stop()
    }

    @Test
    fun `a create without an idempotency key is refused and nothing is stored`() {
        val app = spawnApp()
        val (status, problem) = create(app, """{"name": "keyless"}""", key = null)
        assertEquals(400, status)
        assertEquals(PROBLEM_TYPE_BASE + "idempotency-key-missing", problem.path("type").textValue())
        assertEquals(0, list(app).second.path("items").size(), "nothing was stored")
        app.service.stop()
    }

    @Test
    fun `a replayed create is answered again and stored once`() {
        val app = spawnApp()
        val key = UUID.randomUUID().toString()
        val (status, first) = create(app, """{"name": "once"}""", key)
        assertEquals(201, status)
        val (again, replayed) = create(app, """{"name": "once"}""", key)
        assertEquals(201, again)
        assertEquals(first, replayed, "the replay is the first answer")
        assertEquals(1, list(app).second.path("items").size())
        val (reused, problem) = create(app, """{"name": "twice"}""", key)
        assertEquals(422, reused)
        assertEquals(PROBLEM_TYPE_BASE + "idempotency-key-reused", problem.path("type").textValue())
        app.service.stop()
    }

    companion object {
        private val contract: JsonNode = ObjectMapper(YAMLFactory())
            .readTree(File("../contracts/${{ values.name }}.yaml"))
        private val schemas = JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012)

        /** The test platform's `paytool status --json --show-secrets` (scripts/test.sh writes it). */
        private val status: JsonNode by lazy {
            val path = System.getenv("PAYTOOL_TEST_STATUS")
                ?: error("PAYTOOL_TEST_STATUS is not set: run the tests through scripts/test.sh, which starts a real Keycloak")
            ObjectMapper().readTree(File(path))
        }

        private fun authSettings(): Settings.Auth {
            val connections = status.path("connections")
            val realm = connections.path("keycloak_realm").textValue()
            return Settings.Auth(
                issuer = "${connections.path("keycloak_public_url").textValue()}/realms/$realm",
                jwksUrl = "${connections.path("keycloak_url").textValue()}/realms/$realm/protocol/openid-connect/certs",
                audience = "${{ values.name }}",
            )
        }

        /** An access token of a confidential client of the realm (client credentials). */
        private fun clientToken(clientId: String): String {
            val connections = status.path("connections")
            val secret = connections.path("client_secrets").path(clientId).textValue()
                ?: error("no secret for the client $clientId: is ${{ values.name }} part of the test platform (paytool up after scaffolding)?")
            val form = "grant_type=client_credentials&client_id=$clientId&client_secret=$secret"
            val response = HttpClient.newHttpClient().send(
                HttpRequest.newBuilder(
                    URI("${connections.path("keycloak_url").textValue()}/realms/${connections.path("keycloak_realm").textValue()}/protocol/openid-connect/token"),
                ).header("content-type", "application/x-www-form-urlencoded")
                    .POST(HttpRequest.BodyPublishers.ofString(form)).build(),
                HttpResponse.BodyHandlers.ofString(),
            )
            assertEquals(200, response.statusCode(), "Keycloak gives $clientId a token: ${response.body()}")
            return ObjectMapper().readTree(response.body()).path("access_token").textValue()
        }

        /** This service's own token. */
        private val token: String by lazy { clientToken("${{ values.name }}") }
    }
}

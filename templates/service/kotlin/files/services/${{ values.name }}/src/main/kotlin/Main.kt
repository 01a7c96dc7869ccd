package paytool.${{ values.crate }}

/** ${{ values.title }}: ${{ values.description }} (scaffolded, template v${{ values.template_version }}). */
fun main() {
    val service = Service.build(Settings.fromEnvironment())
    service.runUntilStopped()
}

// whoami.local.test: answers with what the gateway received, as JSON.
// Useful to see the headers, TLS parameters and request id a client's request arrives with.

function echo(r) {
    // Header names are case-insensitive; lower case makes the echo easy to read by programs.
    var headers = {};
    for (var name in r.headersIn) {
        headers[name.toLowerCase()] = r.headersIn[name];
    }
    var body = {
        service: 'paytool-gateway',
        method: r.method,
        uri: r.uri,
        args: r.args,
        http_version: r.httpVersion,
        remote_address: r.remoteAddress,
        request_id: r.variables.request_id,
        tls: { protocol: r.variables.ssl_protocol, cipher: r.variables.ssl_cipher },
        headers: headers
    };
    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify(body) + '\n');
}

export default { echo };

// Package gateway bridges long-lived WebSockets to plain HTTP services,
// with the semantics of configurapi-runner-ws (docs/gateway.md): a
// browser keeps one socket open at /{need}; each of its messages becomes
// one HTTP POST to a running instance of that need, whose answer comes
// back on the socket; any service can push to any connection through the
// management paths.
//
// # Basics
//
// NewServer returns a Server, an http.Handler:
//
//	GET    /{need}               WebSocket of one client
//	GET    /@connections         list the connections (management token)
//	POST   /@connections/{id}    push the body to that client as one text frame
//	DELETE /@connections/{id}    close that client's socket
//
// Before accepting a socket the gateway POSTs /on_connect to an instance
// (headers connection-id, postback-url and the upgrade request's); a
// status of 400 or more closes the socket with 1008. Each text message,
// JSON {"name"|"action", "params", "query", "payload", "headers"} or any
// other text (then the payload), is POSTed to /{name} of an instance
// (Options.Pick chooses it); the answer is sent back as {"statusCode",
// "headers", "body"} with the message-id echoed. A chunked answer is
// relayed chunk by chunk (x-stream-id, x-stream: chunk, then done),
// reading from the instance only as fast as the client takes the frames.
// /on_disconnect is POSTed when a client leaves.
//
// # Limits
//
// Options bound a message's size (1009), the messages per second of one
// connection (1008), the connections of one need (1013), the requests in
// flight per connection, and idle sockets (pinged, closed with 1001 when
// no pong comes).
//
// # Caveats
//
// The gateway owns, per connection, the request's goroutine (reading), a
// keepalive goroutine and one goroutine per message in flight. Close
// closes every socket and waits for all of them.
package gateway

// Package pipes owns every byte on berth's control connections: the master's
// link to the lanmanager (over WebSocket), each child's control socket and the
// master's own socket (Unix domain sockets).
//
// # Framing
//
// A connection carries a stream of frames in each direction. A frame is
//
//	+----------------+---------------------------+
//	| length: uint32 | envelope: length bytes    |
//	| big-endian     | UTF-8 JSON object         |
//	+----------------+---------------------------+
//
// The length counts the envelope only and must be between 2 and the
// connection's maximum (MaxFrame, 1 MiB, unless the connection was made with a
// smaller one). A larger length is refused before anything is allocated and
// the connection is closed: there is no way to resynchronise a stream.
// Over WebSocket the same frames travel inside binary messages; a frame may
// span messages and a message may hold several frames.
//
// # Envelope
//
//		{"v":1, "type":"started", "id":7, "body":{...}, "error":{"code":"invalid","message":"..."}}
//
//	  - v: protocol version, 1. A frame with another version is answered with
//	    an "unsupported" error (same id; an error frame is not answered) and
//	    the receiver closes the connection: it cannot know what else such a
//	    peer will send. [Conn.Recv] does the answering and returns a
//	    [*VersionError].
//	  - type: the message type, 1-64 bytes of [a-z0-9_.-]. Required.
//	  - id: optional. A request that wants an answer sets a non-zero id; the
//	    answer carries the same id.
//	  - body: the message's payload, a JSON value whose shape depends on type
//	    (see messages.go). Receivers validate it and answer a bad one with an
//	    error frame (type "error") naming the field.
//	  - error: set on error answers only, with a code from the list below and
//	    a human-readable message.
//
// Unknown envelope fields are refused; unknown body fields are ignored so
// that a newer peer can add to a message.
//
// # Error codes
//
// The list is append-only: invalid, not_found, exists, unauthorized,
// internal, unsupported, exhausted, stale. [ErrorFrom] and [Error.Unwrap] map
// them to and from the sentinels of package needs and this package.
//
// # Limits
//
// Besides the frame size, body fields that a peer could use to make the
// other overflow, allocate or dial at will are bounded, and a frame that
// breaks a bound is answered with an "invalid" error naming the field:
//
//   - heartbeat_ms, ttl_ms and stop_grace_ms (welcome) and grace_ms (stop,
//     child.stop): 0 to 24 h in milliseconds ([MaxLinkMS], [MaxGraceMS]).
//     A larger grace_ms used to overflow a time.Duration.
//   - address (hello): an IP address that is neither unspecified nor
//     multicast. address (started), when set: such an IP address or a host
//     name of at most [MaxHostLen] bytes whose labels are 1-63 bytes of
//     [A-Za-z0-9-], neither beginning nor ending with '-'. The lanmanager
//     further refuses a started whose address is not the one its master
//     registered with in its hello: it only ever dials that address.
//   - boot (hello): at most 64 bytes. It is a nonce the master draws at
//     each start; the lanmanager refuses a second live link for a master
//     id from a different boot (a copied master.id), and lets a new link
//     from the same boot replace the old one (a reconnect).
//   - log.data chunks: at most [MaxLogChunk] bytes; logs tail: at most
//     [MaxLogTail] lines.
//
// # Resource limits
//
// The need in an offer or a grant carries its limits, when it has any:
// "limits": {"memory": "256M", "cpus": 0.5, "pids": 200} ([needs.Limits];
// memory is a size string, or a whole number of bytes; each is validated
// with the need: memory 1M-1P, cpus 0.01-8192, pids 0-4194304, 0 or
// absent meaning none). A master that cannot enforce them bids no with
// the reason. An exited frame says "oom_killed": true when the kernel's
// OOM killer killed a process of the child, with "memory_limit", the
// need's limit as a size string; the lanmanager records such an exit as
// "oom-killed (memory 256M)". Older peers ignore these fields (a master
// that does not know limits runs the child without them).
//
// # Services
//
// The running set reaches a master in "services" frames ([Services]), if
// its hello set services. One revision is [Services.Parts] frames in a row,
// Part 0 to Parts-1 (at most [MaxServicesParts]), each under the frame
// limit, applied when the last has arrived. The first revision on a link
// is Full and replaces the receiver's set; later ones are diffs against
// Base: their instances are added or replace those of the same name, and
// those in removed are dropped. A receiver whose set is not at Base
// answers an error and drops the link, so that the next link starts from
// a full set. Each part is validated alone: rev > 0; base 0 in a full
// set, 1 to rev-1 in a diff; removed empty in a full set; every instance
// an instance of its need, listed once (in instances or removed), with a
// valid alloc, master name, a dialable address (as for started) and ports
// in 1-65535.
//
// # Mesh
//
// A master whose hello set services also gets, after the welcome and each
// time the list changes, a "mesh" frame ([Mesh]): every need with
// ingress or on the WebSocket gateway, its ingress ports, balance and
// weights, whether it is on the gateway, and the gateway's token (so that
// a master with a gatewayaddress serves it too); and in targets
// ([MeshTarget]) every need some upstream leads to, with its balance and
// weights, which the upstream listeners of the master's children take. It
// opens the ingress ports on its
// ingress address and balances each connection over the need's running
// set (the services frames). It reports every such port, whole, in an
// "ingress" frame ([IngressReport]) each time one opens, fails or closes:
// open, or the error that keeps it shut. Each is validated: need names
// valid and listed once, ports 1-65535 of known protocols, known balances,
// at most [MaxMeshNeeds] entries, errors at most [MaxIngressError] bytes
// of UTF-8 and only on ports not open.
//
// # Child lifecycle messages
//
// On a child's control socket, a master whose child's need has upstreams
// or peers (docs/mesh.md) sends it the event set of @kumori/tcp-proxy
// (childmesh.go):
//
//   - "mesh.ready" ([MeshState]) right after each connection of the pipe
//     (a reconnection included): the upstream listeners are open; their
//     addresses and targets, and the peers.
//   - "mesh.change" ([MeshState]) whenever the peers or an upstream's
//     targets change: the whole new state, never a diff.
//   - "mesh.error" ([MeshError]): something does not work, e.g. an
//     upstream whose need has no running instance (its listener accepts
//     and closes connections meanwhile), or a listener that could not be
//     opened again after a master restart. Sent when the error appears,
//     and again after each ready.
//   - "mesh.close" ([MeshClose]): the master is stopping the child; no
//     change follows, and the listeners close when the child exits.
//
// A state's peers are null when the need has no peers. A peer (and an
// upstream target) is {instance, master, address, ports}, as in the peers
// file. Validation: upstream names 1-32 bytes of [a-z0-9_-], need names
// valid, known protocols, addresses 127.0.0.1:PORT-like (an IP that can
// be dialled and a port 1-65535), at most [MaxPeers] entries per list and
// [needs.MaxUpstreams] upstreams, texts at most [MaxMeshErrorLen] bytes
// of UTF-8, a non-empty error message. A child that does not know these
// types answers them with "unsupported" errors, which the master ignores.
//
// # Drivers
//
// A master's hello lists its spawn drivers in drivers ([DriverInfo], at
// most [MaxDrivers]): name (a DNS label), version (at most 128 bytes),
// builtin (exec), available and reason (at most 4096 bytes), what it
// supports (signals, resource_limits, socket_activation), and for an
// external driver its process's pid and restarts. It is what the master
// saw when the link came up; a lanmanager keeps it for `master ls` and
// does not place by it (a master's bid says whether it can run a need's
// driver). On the master's own socket, a "drivers" request (no body) is
// answered with the same list as the body ([]DriverInfo), for `master
// drivers`. Older peers ignore the field and answer the request
// "unsupported". The driver protocol itself is gRPC, not these frames:
// see package driverplugin and docs/drivers.md.
//
// # Versioning
//
// A peer that changes the meaning of a message bumps v. Adding optional body
// fields or new message types does not: every receiver (lanmanager, master,
// child SDK, control socket) answers a type it does not know with an
// "unsupported" error carrying the message's id, and keeps the connection.
//
// # Control sockets
//
// [Listen] creates a Unix socket with mode 0600. If the path exists it dials
// it first: a live listener means another owner, and Listen refuses; a dead
// socket is removed; a path that is not a socket is refused. Socket paths are
// limited to [MaxSocketPath] bytes (the kernel's sun_path is 108 bytes with
// its NUL). [Listen] and [Dial] both refuse, with [ErrUnsafeDir], a socket
// whose directory is a symbolic link, is not owned by the process's
// effective user, or may be written by group or others: whoever can write
// there can put a socket of their own in its place.
package pipes

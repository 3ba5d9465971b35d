// Package ipchub is an IPC hub: processes of a LAN exchange messages
// through it, in groups. It speaks the protocol of acebase-ipc-server, so
// that unmodified AceBase processes (storage.ipc: {host, port, role, token})
// can use it; docs/ipc.md describes the protocol byte by byte.
//
// # Basics
//
// NewServer returns a Server, an http.Handler whose paths sit at the root
// of its listener:
//
//	GET  /{group}/connect?id=ID&v=VERSION&t=TOKEN   WebSocket of one peer
//	POST /{group}/send?id=ID&t=TOKEN                a large message
//	GET  /{group}/receive?id=ID&msg=MSGID&t=TOKEN   fetch one, once
//
// Text frames from a peer: "ping" gets "pong"; "to:PEER;PAYLOAD" sends
// PAYLOAD to PEER; "to:all;PAYLOAD" sends PAYLOAD to every other peer of
// the group; anything else goes as is to every other peer. The hub sends
// "welcome:{"maxPayload":N}" to a newcomer, "connect:ID" and
// "disconnect:ID" to the others, and "get:MSGID" for a large message.
// Notices never leave their group.
//
// # Limits
//
// Every peer has a send queue of Options.QueueLen frames; a peer whose
// queue is full, or that does not take a batch of frames (its writer sends
// what is queued, up to 32 KiB, in one write) within Options.WriteTimeout, is
// disconnected with status 1013 and a reason naming it a slow consumer,
// and counted in Counters.SlowDisconnects. The others never wait for it.
// A frame over MaxPayload closes the socket with status 1009. Large
// messages wait at most LargeTTL, and at most MaxLarge of them and
// MaxLargeBytes in all.
//
// # Caveats
//
// The hub owns two goroutines per peer: the request's (reading) and a
// writer. Close waits for both; a peer that does not answer the close
// handshake can hold Close for the websocket library's bound (about 10 s)
// after CloseGrace. The hub imports nothing of berth's.
package ipchub

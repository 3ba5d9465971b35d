package portoffice

import (
	"encoding/json"
	"testing"
	"time"

	"berth/needs"
)

// FuzzDecodeRecords feeds arbitrary keys and values, as a damaged or
// hostile ports.db could hold them, to the decoders of the leases and
// quarantine buckets. They must never panic; what they accept must survive
// an encode and decode again unchanged.
func FuzzDecodeRecords(f *testing.F) {
	since := time.Date(2026, 1, 2, 15, 4, 5, 999999999, time.UTC)
	lease, _ := json.Marshal(record{Owner: "a1b2", Since: since})
	q, _ := json.Marshal(qrecord{Proto: needs.HTTP, Since: since, Until: since.Add(time.Minute), Reason: "bind: address already in use"})
	f.Add(portKey(16000), lease)
	f.Add(portKey(16001), q)
	f.Add([]byte{0, 0}, lease)
	f.Add([]byte{0x3e}, q)
	f.Add(portKey(1), []byte(`{"proto":"tcp","until":"not a time"}`))
	f.Add(portKey(65535), []byte(`{"owner":""}`))
	f.Add(portKey(2), []byte(`null`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if l, err := decodeLease(needs.TCP, k, v); err == nil {
			if l.Port < 1 || l.Port > MaxPort || l.Owner == "" {
				t.Fatalf("accepted %+v", l)
			}
			b, err := json.Marshal(record{Owner: l.Owner, Since: l.Since})
			if err != nil {
				t.Fatal(err)
			}
			again, err := decodeLease(needs.TCP, portKey(l.Port), b)
			if err != nil || again.Owner != l.Owner || !again.Since.Equal(l.Since) || again.Port != l.Port {
				t.Fatalf("round trip: %+v, %v; want %+v", again, err, l)
			}
		}
		if q, err := decodeQuarantine(k, v); err == nil {
			if q.Port < 1 || q.Port > MaxPort || q.Proto == "" || q.Until.IsZero() {
				t.Fatalf("accepted %+v", q)
			}
			b, err := json.Marshal(qrecord{Proto: q.Proto, Since: q.Since, Until: q.Until, Reason: q.Reason})
			if err != nil {
				t.Fatal(err)
			}
			again, err := decodeQuarantine(portKey(q.Port), b)
			if err != nil || !sameQuarantine([]Quarantine{again}, []Quarantine{q}) {
				t.Fatalf("round trip: %+v, %v; want %+v", again, err, q)
			}
		}
	})
}

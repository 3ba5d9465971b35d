package lan

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"berth/needs"
)

// FuzzJournalSegment feeds arbitrary bytes to the decoder of a journal
// segment, as the last segment and as an earlier one: no panic; what it
// accepts, encoded again, decodes to the same entries; and an earlier
// segment is never cut short (a bad frame there is damage, not a torn
// write).
func FuzzJournalSegment(f *testing.F) {
	seg := segmentHeader(7)
	for _, c := range []*Change{
		{PutNeeds: []*needs.Need{{Name: "web", Instances: 2, Command: []string{"x"}}}, DeleteInstances: []string{"web.1"}},
		{PutInstances: []*needs.Instance{{Need: "web", Name: "web.0", Restarts: 3}}, PutDrained: map[string]time.Time{"m1": time.Unix(5, 0)}},
	} {
		e, err := encodeChange(c)
		if err != nil {
			f.Fatal(err)
		}
		seg = appendFrame(seg, e.payload())
		f.Add(seg)
	}
	f.Add(seg[:len(seg)-3])
	f.Add(append(seg, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add(segmentHeader(7)[:10])
	f.Add(appendFrame(segmentHeader(7), []byte(`{"needs":{"a":1}}`)))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, last := range []bool{true, false} {
			entries, good, err := decodeSegment("seg", b, 7, last)
			if err != nil {
				if _, ok := err.(*JournalDamagedError); !ok {
					t.Fatalf("last=%v: error %T %v, want a JournalDamagedError", last, err, err)
				}
				continue
			}
			if good > int64(len(b)) || (!last && good != int64(len(b))) {
				t.Fatalf("last=%v: good %d of %d bytes", last, good, len(b))
			}
			again := segmentHeader(7)
			for _, e := range entries {
				again = appendFrame(again, e.payload())
			}
			back, _, err := decodeSegment("seg", again, 7, false)
			if err != nil {
				t.Fatalf("re-encoded entries do not decode: %v", err)
			}
			if len(back) != len(entries) {
				t.Fatalf("%d entries re-encoded decode to %d", len(entries), len(back))
			}
			for i := range back {
				if !reflect.DeepEqual(normalize(back[i]), normalize(entries[i])) {
					t.Fatalf("entry %d: %+v decodes again as %+v", i, entries[i], back[i])
				}
			}
		}
	})
}

// normalize is e with its raw values compacted, as json.Marshal writes them.
func normalize(e *journalEntry) map[string]map[string]string {
	out := map[string]map[string]string{}
	for name, m := range map[string]map[string]json.RawMessage{"needs": e.Needs, "instances": e.Instances, "drained": e.Drained} {
		out[name] = map[string]string{}
		for k, v := range m {
			var x any
			json.Unmarshal(v, &x)
			b, _ := json.Marshal(x)
			out[name][k] = string(b)
		}
	}
	return out
}

// TestRecordsUnder: a checkpoint that failed lays what it took beneath
// what was written since: the newer value of a record wins (a deletion
// too), the older one fills in the rest, and the count is of distinct
// records.
func TestRecordsUnder(t *testing.T) {
	older, newer := newRecords(), newRecords()
	older.add(&journalEntry{Needs: map[string]json.RawMessage{"a": []byte(`{"v":1}`), "b": []byte(`{"v":1}`), "c": []byte(`{"v":1}`)}})
	newer.add(&journalEntry{Needs: map[string]json.RawMessage{"a": []byte(`{"v":2}`), "b": []byte(`null`), "d": []byte(`{"v":2}`)}})
	newer.under(older)
	want := map[string][]byte{"a": []byte(`{"v":2}`), "b": nil, "c": []byte(`{"v":1}`), "d": []byte(`{"v":2}`)}
	if !reflect.DeepEqual(newer.needs, want) || newer.n != 4 {
		t.Fatalf("under: %q (n %d), want %q (n 4)", newer.needs, newer.n, want)
	}
}

// TestPayloadIsJSON: the payload written by hand decodes to the entry, with
// names that need escaping (quotes, backslashes, control characters,
// non-ASCII, invalid UTF-8) and an empty bucket left out.
func TestPayloadIsJSON(t *testing.T) {
	e := &journalEntry{
		Needs:     map[string]json.RawMessage{"a\"b\\c": json.RawMessage(`{"x":1}`), "\x01\n\u2028é": json.RawMessage(`null`), "bad\xff": json.RawMessage(`{}`)},
		Instances: map[string]json.RawMessage{},
		Drained:   map[string]json.RawMessage{"m1": json.RawMessage(`{"since":"2026-12-05T00:00:00Z"}`)},
	}
	p := e.payload()
	var back journalEntry
	if err := json.Unmarshal(p, &back); err != nil {
		t.Fatalf("payload %s: %v", p, err)
	}
	if len(back.Instances) != 0 || len(back.Needs) != 3 || len(back.Drained) != 1 {
		t.Fatalf("payload %s decodes to %+v", p, back)
	}
	for k, v := range e.Needs {
		want := k
		if k == "bad\xff" {
			want = "bad\ufffd" // as json.Marshal writes it, too
		}
		if got, ok := back.Needs[want]; !ok || string(got) != string(v) {
			t.Errorf("need %q: %s, %v; want %s (payload %s)", k, got, ok, v, p)
		}
	}
}

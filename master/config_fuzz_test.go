package master_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"berth/master"
)

// FuzzParseConfig feeds arbitrary bytes to the masterconfig.json decoder:
// it must never panic, and a config it accepts must survive a round trip.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"lanmanageraddress":"10.0.0.1:9000","portrangestart":{"tcp":15000,"http":16000},"portrangesize":10,"runtimedirectory":"rt","name":"m1","advertiseaddress":"127.0.0.1","token":"t"}`))
	f.Add([]byte(`{"portrangestart":null}`))
	f.Add([]byte(`{"portrangesize":"x"}`))
	f.Add([]byte(`{"lanmanagerportcorrection":-23552}`))
	f.Add([]byte(`{"stopafterdisconnect":"30s","repairinterval":"1m"}`))
	f.Add([]byte(`{"stopafterdisconnect":"0s"}`))
	f.Add([]byte(`{"repairinterval":"999ms"}`))
	f.Add([]byte(`{"repairinterval":"1e3h"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := master.ParseConfig(b)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := master.ParseConfig(out)
		if err != nil {
			t.Fatalf("re-encoded config %s refused: %v", out, err)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, again)
		}
	})
}

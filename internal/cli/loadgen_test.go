package cli

import "testing"

func TestWSURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://198.18.0.2:8080/ws":    "ws://198.18.0.2:8080/ws",
		"http://198.18.0.2:8080":     "ws://198.18.0.2:8080/ws",
		"https://example.test:8443/": "wss://example.test:8443/ws",
		"ws://h:1/stream":            "ws://h:1/stream",
	} {
		if got, err := wsURL(in); err != nil || got != want {
			t.Errorf("%s: %s %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "198.18.0.2:8080", "ftp://h/ws"} {
		if _, err := wsURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

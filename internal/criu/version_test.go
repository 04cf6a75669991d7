package criu

import "testing"

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"Version: 4.2.1\nGitID: v4.2.1\n", Version{4, 2, 1}, true},
		{"Version: 3.17\n", Version{3, 17, 0}, true},
		{"criu: command not found", Version{}, false},
	} {
		got, err := ParseVersion(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
	if !(Version{3, 17, 1}).Less(MinVersion) || (Version{4, 2, 1}).Less(MinVersion) || !(Version{4, 1, 9}).Less(MinVersion) {
		t.Error("version ordering wrong around the 4.2 minimum")
	}
}

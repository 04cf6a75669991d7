package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// WriteFiles gives a program that reads paths (CRIU's GnuTLS) the same
// identity, root-only, also over older, looser files.
func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Issue(dir, "hostA", []string{"198.19.0.11"}); err != nil {
		t.Fatal(err)
	}
	id, err := Load(dir, "hostA")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "criu-tls")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "key.pem"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := id.WriteFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{out: 0o700, f.CA: 0o600, f.Cert: 0o600, f.Key: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	again, err := LoadFiles("hostA", f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Cert.Certificate[0], id.Cert.Certificate[0]) || !again.Cert.Leaf.Equal(id.Cert.Leaf) {
		t.Error("the certificate written is not the identity's")
	}
	// The key written is the certificate's: LoadFiles (tls.X509KeyPair)
	// refuses a key that does not match.
	caPEM, _ := os.ReadFile(CACertPath(dir))
	if got, _ := os.ReadFile(f.CA); !bytes.Equal(got, caPEM) {
		t.Error("the CA written is not the identity's")
	}
}

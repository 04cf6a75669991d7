package fleet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	hostsBucket = []byte("hosts")
	opsBucket   = []byte("operations")
)

// store keeps hosts and operations across restarts. Every change of an
// operation is written at once: it is what an operator polls, and what a
// restarted controller reads to say which steps were interrupted.
type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("fleet state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{hostsBucket, opsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) put(bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), b) })
}

// each decodes every value of a bucket, in key order, into a fresh T.
func each[T any](s *store, bucket []byte, fn func(*T)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			t := new(T)
			if err := json.Unmarshal(v, t); err != nil {
				return err
			}
			fn(t)
			return nil
		})
	})
}

// nextID numbers operations in the order they were made, across restarts.
func (s *store) nextID() (string, error) {
	var id string
	err := s.db.Update(func(tx *bolt.Tx) error {
		n, err := tx.Bucket(opsBucket).NextSequence()
		id = fmt.Sprintf("op-%06d", n)
		return err
	})
	return id, err
}

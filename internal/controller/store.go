package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// The store keeps the desired state in a bbolt file: one key per address
// and per service, so a change rewrites only what it touches.
var (
	bucketAddrs = []byte("addresses")
	bucketSvcs  = []byte("services")
	bucketMeta  = []byte("meta")
	keyFlood    = []byte("flood_arp")
	keyInit     = []byte("initialized")
	keyVersion  = []byte("version")
)

const storeVersion = "1"

// syncDelay bounds how long an acknowledged change can sit in the page
// cache before it is fsynced, when commits do not fsync themselves.
const syncDelay = 100 * time.Millisecond

type store struct {
	db    *bolt.DB
	log   *slog.Logger
	fsync bool

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// openStore opens (creating) the state file. With fsync every commit waits
// for the disk; without, a commit is durable against a crash of the
// controller at once (it is in the kernel's page cache) and against a crash
// of the machine after at most syncDelay, which keeps table updates far
// below a millisecond on ordinary disks.
func openStore(path string, fsync bool, log *slog.Logger) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	db.NoSync = !fsync
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAddrs, bucketSvcs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyVersion); v != nil && string(v) != storeVersion {
			return fmt.Errorf("state file version %s, this controller writes %s", v, storeVersion)
		}
		return meta.Put(keyVersion, []byte(storeVersion))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	s := &store{db: db, log: log, fsync: fsync, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if !fsync {
		s.wg.Add(1)
		go s.syncer()
	}
	return s, nil
}

func (s *store) syncer() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
		}
		select {
		case <-s.done:
		case <-time.After(syncDelay):
		}
		if err := s.db.Sync(); err != nil {
			s.log.Error("fsync state", "err", err)
		}
	}
}

func (s *store) close() error {
	close(s.done)
	s.wg.Wait()
	err := s.db.Sync()
	return errors.Join(err, s.db.Close())
}

// load reads the desired state; initialized is false for a fresh file, whose
// state then comes from the configuration.
func (s *store) load() (st *State, initialized bool, err error) {
	st = newState()
	err = s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		initialized = meta.Get(keyInit) != nil
		if v := meta.Get(keyFlood); v != nil {
			st.Flood = string(v) == "1"
		}
		if err := tx.Bucket(bucketAddrs).ForEach(func(k, v []byte) error {
			ip, err := netip.ParseAddr(string(k))
			if err != nil {
				return fmt.Errorf("address key %q: %w", k, err)
			}
			var rec AddressSpec
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("address %s: %w", ip, err)
			}
			e, err := resolveAddress(nil, "", rec)
			if err != nil {
				return fmt.Errorf("address %s: %w", ip, err)
			}
			st.Addresses[ip] = e
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketSvcs).ForEach(func(k, v []byte) error {
			var rec ServiceSpec
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("service %s: %w", k, err)
			}
			key, err := resolveServiceRef("", rec.ServiceRef)
			if err != nil {
				return fmt.Errorf("service %s: %w", k, err)
			}
			ms, err := resolveMembers("members", key.Proto, rec.Members)
			if err != nil {
				return fmt.Errorf("service %s: %w", k, err)
			}
			st.Services[key] = ms
			return nil
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("load state: %w", err)
	}
	return st, initialized, nil
}

// commit writes the entries that changes touched, as they are in next, in
// one transaction.
func (s *store) commit(changes []change, next *State) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab, sb, meta := tx.Bucket(bucketAddrs), tx.Bucket(bucketSvcs), tx.Bucket(bucketMeta)
		for _, c := range changes {
			switch c.kind {
			case chSetAddr, chDelAddr:
				if err := putAddress(ab, next, c.ip); err != nil {
					return err
				}
			case chSetSvc, chDelSvc:
				if err := putService(sb, next, c.svc); err != nil {
					return err
				}
			case chReaddress:
				// Every service may have changed; rewrite them all
				// (at most a few hundred small records).
				if err := s.rewriteServices(sb, next); err != nil {
					return err
				}
			case chFlood:
				if err := meta.Put(keyFlood, boolByte(next.Flood)); err != nil {
					return err
				}
			}
		}
		return meta.Put(keyInit, []byte("1"))
	})
	if err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	s.kickSync()
	return nil
}

// replace writes a whole state (first start, /reinitialize, /cleanup).
func (s *store) replace(st *State) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAddrs, bucketSvcs} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		ab := tx.Bucket(bucketAddrs)
		for ip := range st.Addresses {
			if err := putAddress(ab, st, ip); err != nil {
				return err
			}
		}
		if err := s.rewriteServices(tx.Bucket(bucketSvcs), st); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyFlood, boolByte(st.Flood)); err != nil {
			return err
		}
		return meta.Put(keyInit, []byte("1"))
	})
	if err != nil {
		return fmt.Errorf("replace state: %w", err)
	}
	s.kickSync()
	return nil
}

func (s *store) kickSync() {
	if s.fsync {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *store) rewriteServices(sb *bolt.Bucket, st *State) error {
	var keys [][]byte
	if err := sb.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := sb.Delete(k); err != nil {
			return err
		}
	}
	for key := range st.Services {
		if err := putService(sb, st, key); err != nil {
			return err
		}
	}
	return nil
}

func putAddress(b *bolt.Bucket, st *State, ip netip.Addr) error {
	k := []byte(ip.String())
	e, ok := st.Addresses[ip]
	if !ok {
		return b.Delete(k)
	}
	v, err := json.Marshal(specOfAddress(nil, e))
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func putService(b *bolt.Bucket, st *State, key dataplane.ServiceKey) error {
	k := []byte(key.String())
	ms, ok := st.Services[key]
	if !ok {
		return b.Delete(k)
	}
	v, err := json.Marshal(ServiceSpec{ServiceRef: refOf(key), Members: specOfMembers(ms)})
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func boolByte(b bool) []byte {
	if b {
		return []byte("1")
	}
	return []byte("0")
}

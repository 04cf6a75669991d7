package controller

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The name registry: one namespace of container names, IPv4 addresses and
// MACs across every host behind the switch. Agents reserve a name and an
// address here before they create anything, and release it when the
// container is removed, so two hosts can never run containers with the same
// name or address (which would make the switch steal one's traffic for the
// other). The controller is the natural owner: it is the one service every
// host already talks to, and its store survives restarts.
//
// The registry has its own lock, not the tables' one: a reservation never
// delays a migration's switch update. It is not on the migration's path at
// all — a migration keeps its reservation and the host is updated after
// the commit.

var bucketNames = []byte("names")

// NameRecord is one container's reservation.
type NameRecord struct {
	Name    string    `json:"name"`
	Host    string    `json:"host"`
	IP      string    `json:"ip"`
	MAC     string    `json:"mac"`
	Created time.Time `json:"created"`
	// Moved is when the host last changed (a migration), zero if never.
	Moved time.Time `json:"moved,omitzero"`
}

// NameRequest is the body of POST /v1/names (reserve) and PUT
// /v1/names/{name} (claim: create or move to another host).
type NameRequest struct {
	Name string `json:"name,omitempty"`
	Host string `json:"host"`
	// IP is optional for POST: the registry then allocates one from the
	// configured container_net.
	IP string `json:"ip,omitempty"`
	// MAC defaults to 02:42 followed by the address's four bytes, the rule
	// agents use.
	MAC string `json:"mac,omitempty"`
}

var registryNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

type registry struct {
	c   *Controller
	net netip.Prefix // zero: no allocation, any address accepted
	// fixed are the configured addresses (the nodes'): never a container's.
	fixed map[netip.Addr]bool

	mu     sync.Mutex
	byName map[string]NameRecord
	byIP   map[netip.Addr]string
	byMAC  map[string]string
}

// openRegistry loads the reservations from the store.
func (c *Controller) openRegistry() (*registry, error) {
	r := &registry{c: c, fixed: map[netip.Addr]bool{}, byName: map[string]NameRecord{},
		byIP: map[netip.Addr]string{}, byMAC: map[string]string{}}
	if s := c.cfg.ContainerNet; s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			return nil, fmt.Errorf("controller config: container_net %q: want an IPv4 prefix of /30 or larger", s)
		}
		r.net = p.Masked()
	}
	for ip := range c.initial.Addresses {
		r.fixed[ip] = true
	}
	err := c.store.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNames)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var rec NameRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("name %s: %w", k, err)
			}
			ip, err := netip.ParseAddr(rec.IP)
			if err != nil {
				return fmt.Errorf("name %s: %w", k, err)
			}
			r.add(rec, ip)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load names: %w", err)
	}
	c.log.Info("name registry loaded", "names", len(r.byName), "container_net", c.cfg.ContainerNet)
	return r, nil
}

func (r *registry) add(rec NameRecord, ip netip.Addr) {
	r.byName[rec.Name], r.byIP[ip], r.byMAC[rec.MAC] = rec, rec.Name, rec.Name
}

func (r *registry) remove(rec NameRecord) {
	delete(r.byName, rec.Name)
	delete(r.byIP, netip.MustParseAddr(rec.IP))
	if r.byMAC[rec.MAC] == rec.Name {
		delete(r.byMAC, rec.MAC)
	}
}

func (r *registry) put(rec NameRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = r.c.store.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketNames).Put([]byte(rec.Name), v) })
	r.c.store.kickSync()
	return err
}

func (r *registry) delete(name string) error {
	err := r.c.store.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketNames).Delete([]byte(name)) })
	r.c.store.kickSync()
	return err
}

// checkRequest validates the parts of a request that need no lock; ip is
// invalid when none was given.
func (r *registry) checkRequest(req NameRequest) (ip netip.Addr, mac net.HardwareAddr, err error) {
	if !registryNameRE.MatchString(req.Name) {
		return ip, nil, errField(ErrInvalid, "name", "%q: want 1-64 of A-Z a-z 0-9 _ . -", req.Name)
	}
	if !registryNameRE.MatchString(req.Host) {
		return ip, nil, errField(ErrInvalid, "host", "%q: want a host name", req.Host)
	}
	if req.IP != "" {
		if ip, err = parseIPv4("ip", req.IP); err != nil {
			return ip, nil, err
		}
		if err := r.usable(ip); err != nil {
			return ip, nil, err
		}
	}
	if req.MAC != "" {
		if mac, err = parseMAC("mac", req.MAC); err != nil {
			return ip, nil, err
		}
		if mac[0]&1 == 1 {
			return ip, nil, errField(ErrInvalid, "mac", "%s is a multicast address", mac)
		}
	}
	return ip, mac, nil
}

// usable says why ip cannot be a container's address regardless of who
// holds what.
func (r *registry) usable(ip netip.Addr) error {
	if r.net.IsValid() {
		if !r.net.Contains(ip) {
			return errField(ErrInvalid, "ip", "address %s is outside the container network %s", ip, r.net)
		}
		if ip == r.net.Addr() || ip == lastAddr(r.net) {
			return errField(ErrInvalid, "ip", "address %s is the network or broadcast address of %s", ip, r.net)
		}
	}
	if r.fixed[ip] {
		return errField(ErrConflict, "ip", "address %s is a node's, configured in the switch", ip)
	}
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// defaultMAC is the agents' rule: 02:42 followed by the address's bytes, so
// a container keeps its MAC on every host.
func defaultMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// allocate picks the lowest free address of the container network. The
// first host address (.1 of a /24) is left out, as a gateway by convention,
// and so is every address in the switch's tables: an address someone
// programmed by hand is not free even if no container holds it.
func (r *registry) allocate() (netip.Addr, error) {
	if !r.net.IsValid() {
		return netip.Addr{}, errField(ErrInvalid, "ip", "missing, and the controller has no container_net to allocate from")
	}
	r.c.mu.Lock()
	inTables := maps.Clone(r.c.state.Addresses)
	r.c.mu.Unlock()
	last := lastAddr(r.net)
	for ip := r.net.Addr().Next().Next(); ip.Less(last); ip = ip.Next() {
		if _, taken := r.byIP[ip]; taken || r.fixed[ip] {
			continue
		}
		if _, taken := inTables[ip]; taken {
			continue
		}
		return ip, nil
	}
	return netip.Addr{}, errField(ErrTableFull, "ip", "no free address left in %s", r.net)
}

func inUse(name string, rec NameRecord) error {
	return errField(ErrConflict, "", "name %q is in use on %s", name, rec.Host)
}

func addrInUse(ip netip.Addr, rec NameRecord) error {
	return errField(ErrConflict, "", "address %s is in use by %q on %s", ip, rec.Name, rec.Host)
}

// Reserve takes a name and an address (allocated when req.IP is empty) for
// a container on req.Host. Reserving again what the same host already holds
// returns the record with created false, so an agent that crashed between
// reserving and creating can retry.
func (c *Controller) Reserve(req NameRequest) (rec NameRecord, created bool, err error) {
	r := c.names
	ip, mac, err := r.checkRequest(req)
	if err != nil {
		return rec, false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byName[req.Name]; ok {
		if old.Host == req.Host && (!ip.IsValid() || old.IP == ip.String()) && (mac == nil || old.MAC == mac.String()) {
			return old, false, nil
		}
		return rec, false, inUse(req.Name, old)
	}
	if !ip.IsValid() {
		if ip, err = r.allocate(); err != nil {
			return rec, false, err
		}
	} else if other, ok := r.byIP[ip]; ok {
		return rec, false, addrInUse(ip, r.byName[other])
	}
	if mac == nil {
		mac = defaultMAC(ip)
	}
	if other, ok := r.byMAC[mac.String()]; ok {
		o := r.byName[other]
		return rec, false, errField(ErrConflict, "", "mac %s is in use by %q on %s", mac, o.Name, o.Host)
	}
	rec = NameRecord{Name: req.Name, Host: req.Host, IP: ip.String(), MAC: mac.String(), Created: time.Now().UTC()}
	if err := r.put(rec); err != nil {
		return NameRecord{}, false, fmt.Errorf("store name %s: %w", req.Name, err)
	}
	r.add(rec, ip)
	c.log.Info("name reserved", "name", rec.Name, "host", rec.Host, "ip", rec.IP)
	return rec, true, nil
}

// Claim records that req.Host runs the container req.Name with req.IP: after
// a migration's commit, or when an agent adopts containers at start. The
// address must be the reserved one; a name nobody holds is reserved.
func (c *Controller) Claim(req NameRequest) (NameRecord, error) {
	r := c.names
	if req.IP == "" {
		return NameRecord{}, errField(ErrInvalid, "ip", "missing")
	}
	ip, mac, err := r.checkRequest(req)
	if err != nil {
		return NameRecord{}, err
	}
	r.mu.Lock()
	old, ok := r.byName[req.Name]
	if !ok {
		r.mu.Unlock()
		rec, _, err := c.Reserve(req)
		return rec, err
	}
	defer r.mu.Unlock()
	if old.IP != ip.String() || (mac != nil && old.MAC != mac.String()) {
		return NameRecord{}, errField(ErrConflict, "", "name %q is in use on %s with address %s", req.Name, old.Host, old.IP)
	}
	if old.Host == req.Host {
		return old, nil
	}
	rec := old
	rec.Host, rec.Moved = req.Host, time.Now().UTC()
	if err := r.put(rec); err != nil {
		return NameRecord{}, fmt.Errorf("store name %s: %w", req.Name, err)
	}
	r.byName[rec.Name] = rec
	c.log.Info("name moved", "name", rec.Name, "from", old.Host, "to", rec.Host)
	return rec, nil
}

// Release frees a name and its address, and removes the address's entry
// from the switch tables: a removed container's address must lead nowhere,
// or a later container given it would see traffic meant for the old one
// until it is steered. With host set, only that host's reservation is
// released (a host that lost a container must not free a name another host
// now holds).
func (c *Controller) Release(name, host string) (NameRecord, error) {
	r := c.names
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.byName[name]
	if !ok {
		return rec, errField(ErrNotFound, "name", "no container named %q is registered", name)
	}
	if host != "" && rec.Host != host {
		return rec, errField(ErrConflict, "", "name %q is registered on %s, not %s", name, rec.Host, host)
	}
	ip := netip.MustParseAddr(rec.IP)
	c.mu.Lock()
	_, steered := c.state.Addresses[ip]
	c.mu.Unlock()
	if steered && !r.fixed[ip] {
		if err := c.Apply([]Op{{Op: "delete_address", IP: rec.IP}}, false); err != nil && StatusOf(err) != http.StatusNotFound {
			return rec, fmt.Errorf("remove the switch entry of %s: %w", rec.IP, err)
		}
	}
	if err := r.delete(name); err != nil {
		return rec, fmt.Errorf("store name %s: %w", name, err)
	}
	r.remove(rec)
	c.log.Info("name released", "name", name, "host", rec.Host, "ip", rec.IP)
	return rec, nil
}

// Names lists the reservations, sorted by name.
func (c *Controller) Names() []NameRecord {
	r := c.names
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Collect(maps.Values(r.byName))
	slices.SortFunc(out, func(a, b NameRecord) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// steeringOps are the move_address operations that point every reserved
// address at its host's port (the port named after the host), with the
// destination-MAC rewrite agents steer with.
func (c *Controller) steeringOps() []Op {
	var ops []Op
	for _, rec := range c.Names() {
		ops = append(ops, Op{Op: "move_address", IP: rec.IP, Port: PortRef(rec.Host), DstMAC: rec.MAC})
	}
	return ops
}

func (c *Controller) nameRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/names", c.read(func(*http.Request) (int, any, error) {
		return http.StatusOK, c.Names(), nil
	}))
	mux.Handle("GET /v1/names/{name}", c.read(func(r *http.Request) (int, any, error) {
		c.names.mu.Lock()
		rec, ok := c.names.byName[r.PathValue("name")]
		c.names.mu.Unlock()
		if !ok {
			return 0, nil, errField(ErrNotFound, "name", "no container named %q is registered", r.PathValue("name"))
		}
		return http.StatusOK, rec, nil
	}))
	mux.Handle("POST /v1/names", c.write(func(r *http.Request) (int, any, error) {
		var req NameRequest
		if err := decode(r, &req, true); err != nil {
			return 0, nil, err
		}
		if err := checkAgentHost(r, req.Host); err != nil {
			return 0, nil, err
		}
		rec, created, err := c.Reserve(req)
		if err != nil {
			return 0, nil, err
		}
		if created {
			return http.StatusCreated, rec, nil
		}
		return http.StatusOK, rec, nil
	}))
	mux.Handle("PUT /v1/names/{name}", c.write(func(r *http.Request) (int, any, error) {
		var req NameRequest
		if err := decode(r, &req, true); err != nil {
			return 0, nil, err
		}
		if req.Name != "" && req.Name != r.PathValue("name") {
			return 0, nil, errField(ErrInvalid, "name", "%q differs from the path's %q", req.Name, r.PathValue("name"))
		}
		req.Name = r.PathValue("name")
		if err := c.checkClaim(r, req); err != nil {
			return 0, nil, err
		}
		rec, err := c.Claim(req)
		return http.StatusOK, rec, err
	}))
	mux.Handle("DELETE /v1/names/{name}", c.write(func(r *http.Request) (int, any, error) {
		host := r.URL.Query().Get("host")
		if who := agentIdentity(r); who != "" && host == "" {
			return 0, nil, errField(ErrForbidden, "host", "%s must name its own host (?host=%s) to release a name", who, who)
		}
		if err := checkAgentHost(r, host); err != nil {
			return 0, nil, err
		}
		rec, err := c.Release(r.PathValue("name"), host)
		return http.StatusOK, rec, err
	}))
}

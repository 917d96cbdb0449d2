package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds arbitrary DNS answers to the code that turns them into
// cache entries: no panic, addresses only of the family asked, and TTLs
// within the caps.
func FuzzAnswer(f *testing.F) {
	for _, m := range seedAnswers(f) {
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	r := &Resolver{server: "fuzz", maxTTL: time.Hour, maxNeg: 5 * time.Minute}
	f.Fuzz(func(t *testing.T, wire []byte) {
		m := new(dns.Msg)
		if m.Unpack(wire) != nil {
			return
		}
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			e, ttl, err := r.entry(m, "x.test", qtype)
			if err != nil {
				continue
			}
			if ttl < 0 || ttl > time.Hour || e.notFound && ttl > 5*time.Minute {
				t.Fatalf("ttl %v for %+v", ttl, e)
			}
			for _, a := range e.addrs {
				if a.Is4() != (qtype == dns.TypeA) {
					t.Fatalf("%s in an answer for type %d", a, qtype)
				}
			}
		}
	})
}

func seedAnswers(f *testing.F) []*dns.Msg {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	q := new(dns.Msg)
	q.SetQuestion("x.test.", dns.TypeA)
	ok := new(dns.Msg)
	ok.SetReply(q)
	ok.Answer = []dns.RR{rr("x.test. 30 IN CNAME y.test."), rr("y.test. 60 IN A 192.0.2.1"), rr("y.test. 60 IN AAAA 2001:db8::1")}
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	nx.Ns = []dns.RR{rr("test. 60 IN SOA ns.test. root.test. 1 3600 600 86400 10")}
	fail := new(dns.Msg)
	fail.SetRcode(q, dns.RcodeServerFailure)
	return []*dns.Msg{ok, nx, fail}
}

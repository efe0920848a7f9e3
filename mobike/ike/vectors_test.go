package ike

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mobiked/mobiked/mobike/wire"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 7748 §5.2 (first vector) and §6.1 (the Alice/Bob exchange), as
// Curve25519 is used by IKEv2 (RFC 8031): KE data is the u coordinate, the
// shared secret the resulting u coordinate.
func TestX25519RFC7748(t *testing.T) {
	k, err := KeyShareFrom(wire.DHCurve25519, unhex(t, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Shared(unhex(t, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"); !bytes.Equal(got, want) {
		t.Errorf("§5.2: %x, want %x", got, want)
	}

	alice, _ := KeyShareFrom(wire.DHCurve25519, unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	bob, _ := KeyShareFrom(wire.DHCurve25519, unhex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
	if want := unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); !bytes.Equal(alice.Public(), want) {
		t.Errorf("alice public %x", alice.Public())
	}
	if want := unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"); !bytes.Equal(bob.Public(), want) {
		t.Errorf("bob public %x", bob.Public())
	}
	want := unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	for name, pair := range map[string][2]*KeyShare{"alice": {alice, bob}, "bob": {bob, alice}} {
		got, err := pair[0].Shared(pair[1].Public())
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("§6.1 %s: %x, %v", name, got, err)
		}
	}
	// RFC 8031 §2.3: an all-zero result (low-order point) is refused.
	if _, err := alice.Shared(make([]byte, 32)); err == nil {
		t.Error("zero point accepted")
	}
}

// RFC 5903 §8.1: the 256-bit random ECP group (IKEv2 group 19). KE data is
// x | y; the shared secret is the x coordinate of g^ir.
func TestECP256RFC5903(t *testing.T) {
	i, err := KeyShareFrom(wire.DHECP256, unhex(t, "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433"))
	if err != nil {
		t.Fatal(err)
	}
	gi := unhex(t, "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"+
		"5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3")
	if !bytes.Equal(i.Public(), gi) {
		t.Errorf("g^i = %X", i.Public())
	}
	gr := unhex(t, "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"+
		"56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB")
	got, err := i.Shared(gr)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE"); !bytes.Equal(got, want) {
		t.Errorf("g^ir x = %X", got)
	}
	r, _ := KeyShareFrom(wire.DHECP256, unhex(t, "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53"))
	if !bytes.Equal(r.Public(), gr) {
		t.Errorf("g^r = %X", r.Public())
	}
	for _, bad := range [][]byte{gr[:63], append(bytes.Clone(gr[:32]), make([]byte, 32)...)} {
		if _, err := i.Shared(bad); err == nil {
			t.Errorf("bad point %x accepted", bad)
		}
	}
}

// RFC 4868 §2.7.2.1 (PRF-HMAC-SHA-256 test cases 1 and 2 with 32-octet
// keys); AUTH_HMAC_SHA2_256_128 is the first 16 octets (§2.7.2.2 uses the
// same data).
func TestHMACSHA256RFC4868(t *testing.T) {
	for _, tc := range []struct{ key, data, mac string }{
		{strings.Repeat("0b", 32), hex.EncodeToString([]byte("Hi There")),
			"198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"},
		{strings.Repeat("4a656665", 8), hex.EncodeToString([]byte("what do ya want for nothing?")),
			"167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6"},
	} {
		key, data, want := unhex(t, tc.key), unhex(t, tc.data), unhex(t, tc.mac)
		if got := PRF(key, data); !bytes.Equal(got, want) {
			t.Errorf("prf = %x, want %x", got, want)
		}
		s := Suite{Encr: wire.EncrAESCBC, KeyBits: 128, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}
		sk, err := NewSK(s, make([]byte, 16), key)
		if err != nil {
			t.Fatal(err)
		}
		if got := sk.icv(data); !bytes.Equal(got, want[:16]) {
			t.Errorf("HMAC-SHA-256-128 = %x, want %x", got, want[:16])
		}
	}
}

// The GCM specification's test cases 4 (AES-128) and 16 (AES-256), framed
// as RFC 5282 uses them: the key material is key | 4-octet salt, and the
// nonce is salt | the 8-octet explicit IV carried in the SK payload.
func TestGCMAsRFC5282(t *testing.T) {
	plain := unhex(t, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
	aad := unhex(t, "feedfacedeadbeeffeedfacedeadbeefabaddad2")
	for _, tc := range []struct {
		bits    int
		key, ct string
	}{
		{128, "feffe9928665731c6d6a8f9467308308",
			"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091" +
				"5bc94fbc3221a5db94fae95ae7121a47"},
		{256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662" +
				"76fc6ece0f4e1768cddf8853bb2d551b"},
	} {
		s := Suite{Encr: wire.EncrAESGCM16, KeyBits: tc.bits, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}
		sk, err := NewSK(s, append(unhex(t, tc.key), unhex(t, "cafebabe")...), nil)
		if err != nil {
			t.Fatal(err)
		}
		nonce := append(bytes.Clone(sk.salt), unhex(t, "facedbaddecaf888")...)
		if got := sk.aead.Seal(nil, nonce, plain, aad); !bytes.Equal(got, unhex(t, tc.ct)) {
			t.Errorf("AES-%d-GCM: %x", tc.bits, got)
		}
	}
}

// prf+ per RFC 7296 §2.13, spelled out independently: T1 = prf(K, S|0x01),
// T2 = prf(K, T1|S|0x02), ...
func TestPRFPlus(t *testing.T) {
	key, seed := []byte("key"), []byte("seed")
	t1 := PRF(key, append(bytes.Clone(seed), 1))
	t2 := PRF(key, append(append(bytes.Clone(t1), seed...), 2))
	t3 := PRF(key, append(append(bytes.Clone(t2), seed...), 3))
	want := append(append(bytes.Clone(t1), t2...), t3...)
	for _, n := range []int{0, 1, 32, 33, 70, 96} {
		got, err := PRFPlus(key, seed, n)
		if err != nil || !bytes.Equal(got, want[:n]) {
			t.Errorf("prf+ %d: %x, %v", n, got, err)
		}
	}
	if _, err := PRFPlus(key, seed, 255*32+1); err == nil {
		t.Error("prf+ beyond 255 blocks accepted")
	}
	if got, _ := PRFPlus(key, seed, 255*32); len(got) != 255*32 {
		t.Errorf("prf+ max: %d octets", len(got))
	}
}

// RFC 7296 §2.14: the key material is split in the order d, ai, ar, ei, er,
// pi, pr, with lengths from the suite.
func TestDeriveKeysSplit(t *testing.T) {
	ni, nr, shared := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	spiI, spiR := wire.SPI{1, 2, 3, 4, 5, 6, 7, 8}, wire.SPI{9, 10, 11, 12, 13, 14, 15, 16}
	seedKey := PRF(append(bytes.Clone(ni), nr...), shared)
	seed := append(append(append(append([]byte{}, ni...), nr...), spiI[:]...), spiR[:]...)
	for _, tc := range []struct {
		s         Suite
		a, e      int
		encrTotal int
	}{
		{Suite{Encr: wire.EncrAESGCM16, KeyBits: 128, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}, 0, 20, 0},
		{Suite{Encr: wire.EncrAESGCM16, KeyBits: 256, PRF: wire.PRFHMACSHA256, Group: wire.DHECP256}, 0, 36, 0},
		{Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}, 32, 32, 0},
	} {
		k, err := DeriveKeys(tc.s, ni, nr, shared, spiI, spiR)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.SKEYSEED, seedKey) {
			t.Errorf("%s: SKEYSEED %x", tc.s, k.SKEYSEED)
		}
		km, _ := PRFPlus(seedKey, seed, 32+2*tc.a+2*tc.e+64)
		parts := [][]byte{k.D, k.AI, k.AR, k.EI, k.ER, k.PI, k.PR}
		lens := []int{32, tc.a, tc.a, tc.e, tc.e, 32, 32}
		off := 0
		for i, p := range parts {
			if !bytes.Equal(p, km[off:off+lens[i]]) {
				t.Errorf("%s: key %d = %x, want %x", tc.s, i, p, km[off:off+lens[i]])
			}
			off += lens[i]
		}
	}
	if _, err := DeriveKeys(Suite{Encr: 99, KeyBits: 128, PRF: wire.PRFHMACSHA256, Group: wire.DHCurve25519}, ni, nr, shared, spiI, spiR); err == nil {
		t.Error("unsupported suite accepted")
	}
}

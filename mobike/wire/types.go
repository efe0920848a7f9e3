package wire

import (
	"encoding/hex"
	"strconv"
)

// SPI is an 8-octet IKE SA SPI as it appears in the IKE header.
type SPI [8]byte

// IsZero reports whether the SPI is all zero (the responder SPI of a first
// IKE_SA_INIT request).
func (s SPI) IsZero() bool { return s == SPI{} }

func (s SPI) String() string { return hex.EncodeToString(s[:]) }

// ExchangeType is the IKE header's Exchange Type (RFC 7296 §3.1).
type ExchangeType uint8

const (
	ExchangeIKESAInit     ExchangeType = 34
	ExchangeIKEAuth       ExchangeType = 35
	ExchangeCreateChildSA ExchangeType = 36
	ExchangeInformational ExchangeType = 37
)

func (e ExchangeType) String() string {
	switch e {
	case ExchangeIKESAInit:
		return "IKE_SA_INIT"
	case ExchangeIKEAuth:
		return "IKE_AUTH"
	case ExchangeCreateChildSA:
		return "CREATE_CHILD_SA"
	case ExchangeInformational:
		return "INFORMATIONAL"
	}
	return "exchange(" + strconv.Itoa(int(e)) + ")"
}

// Flags is the IKE header's flag octet.
type Flags uint8

const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: always 0 in IKEv2
	FlagResponse  Flags = 0x20 // R: the message is a response
)

// Has reports whether all bits of f2 are set in f.
func (f Flags) Has(f2 Flags) bool { return f&f2 == f2 }

func (f Flags) String() string {
	s := ""
	add := func(x string) {
		if s != "" {
			s += "|"
		}
		s += x
	}
	if f.Has(FlagInitiator) {
		add("I")
	}
	if f.Has(FlagVersion) {
		add("V")
	}
	if f.Has(FlagResponse) {
		add("R")
	}
	if rest := f &^ (FlagInitiator | FlagVersion | FlagResponse); rest != 0 {
		add("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	if s == "" {
		return "none"
	}
	return s
}

// PayloadType is a payload's type as named by the preceding Next Payload field
// (RFC 7296 §3.2).
type PayloadType uint8

const (
	PayloadNone      PayloadType = 0
	PayloadSA        PayloadType = 33
	PayloadKE        PayloadType = 34
	PayloadIDi       PayloadType = 35
	PayloadIDr       PayloadType = 36
	PayloadCERT      PayloadType = 37
	PayloadCERTREQ   PayloadType = 38
	PayloadAUTH      PayloadType = 39
	PayloadNonce     PayloadType = 40
	PayloadNotify    PayloadType = 41
	PayloadDelete    PayloadType = 42
	PayloadVendorID  PayloadType = 43
	PayloadTSi       PayloadType = 44
	PayloadTSr       PayloadType = 45
	PayloadEncrypted PayloadType = 46
	PayloadCP        PayloadType = 47
	PayloadEAP       PayloadType = 48
	PayloadSKF       PayloadType = 53
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "No",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadEncrypted: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadSKF: "SKF",
}

func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return "payload(" + strconv.Itoa(int(t)) + ")"
}

// ProtocolID names the protocol of a proposal, notify or delete (RFC 7296 §3.3.1).
type ProtocolID uint8

const (
	ProtocolNone ProtocolID = 0 // notify about the IKE SA with no SPI
	ProtocolIKE  ProtocolID = 1
	ProtocolAH   ProtocolID = 2
	ProtocolESP  ProtocolID = 3
)

func (p ProtocolID) String() string {
	switch p {
	case ProtocolNone:
		return "none"
	case ProtocolIKE:
		return "IKE"
	case ProtocolAH:
		return "AH"
	case ProtocolESP:
		return "ESP"
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// NotifyType is a Notify payload's Notify Message Type (RFC 7296 §3.10.1,
// RFC 4555 §4). Values below 16384 are errors, the rest status types.
type NotifyType uint16

const (
	NotifyUnsupportedCriticalPayload NotifyType = 1
	NotifyInvalidIKESPI              NotifyType = 4
	NotifyInvalidMajorVersion        NotifyType = 5
	NotifyInvalidSyntax              NotifyType = 7
	NotifyInvalidMessageID           NotifyType = 9
	NotifyInvalidSPI                 NotifyType = 11
	NotifyNoProposalChosen           NotifyType = 14
	NotifyInvalidKEPayload           NotifyType = 17
	NotifyAuthenticationFailed       NotifyType = 24
	NotifySinglePairRequired         NotifyType = 34
	NotifyNoAdditionalSAs            NotifyType = 35
	NotifyInternalAddressFailure     NotifyType = 36
	NotifyFailedCPRequired           NotifyType = 37
	NotifyTSUnacceptable             NotifyType = 38
	NotifyInvalidSelectors           NotifyType = 39
	NotifyUnacceptableAddresses      NotifyType = 40 // RFC 4555
	NotifyUnexpectedNATDetected      NotifyType = 41 // RFC 4555
	NotifyTemporaryFailure           NotifyType = 43
	NotifyChildSANotFound            NotifyType = 44

	NotifyInitialContact              NotifyType = 16384
	NotifySetWindowSize               NotifyType = 16385
	NotifyAdditionalTSPossible        NotifyType = 16386
	NotifyIPCompSupported             NotifyType = 16387
	NotifyNATDetectionSourceIP        NotifyType = 16388
	NotifyNATDetectionDestinationIP   NotifyType = 16389
	NotifyCookie                      NotifyType = 16390
	NotifyUseTransportMode            NotifyType = 16391
	NotifyHTTPCertLookupSupported     NotifyType = 16392
	NotifyRekeySA                     NotifyType = 16393
	NotifyESPTFCPaddingNotSupported   NotifyType = 16394
	NotifyNonFirstFragmentsAlso       NotifyType = 16395
	NotifyMOBIKESupported             NotifyType = 16396 // RFC 4555
	NotifyAdditionalIP4Address        NotifyType = 16397 // RFC 4555
	NotifyAdditionalIP6Address        NotifyType = 16398 // RFC 4555
	NotifyNoAdditionalAddresses       NotifyType = 16399 // RFC 4555
	NotifyUpdateSAAddresses           NotifyType = 16400 // RFC 4555
	NotifyCookie2                     NotifyType = 16401 // RFC 4555
	NotifyNoNATsAllowed               NotifyType = 16402 // RFC 4555
	NotifyMultipleAuthSupported       NotifyType = 16404 // RFC 4739
	NotifyAnotherAuthFollows          NotifyType = 16405 // RFC 4739
	NotifyRedirectSupported           NotifyType = 16406 // RFC 5685
	NotifyChildlessIKEv2Supported     NotifyType = 16418 // RFC 6023
	NotifyIKEv2FragmentationSupported NotifyType = 16430 // RFC 7383
	NotifySignatureHashAlgorithms     NotifyType = 16431 // RFC 7427
)

var notifyNames = map[NotifyType]string{
	NotifyUnsupportedCriticalPayload:  "UNSUPPORTED_CRITICAL_PAYLOAD",
	NotifyInvalidIKESPI:               "INVALID_IKE_SPI",
	NotifyInvalidMajorVersion:         "INVALID_MAJOR_VERSION",
	NotifyInvalidSyntax:               "INVALID_SYNTAX",
	NotifyInvalidMessageID:            "INVALID_MESSAGE_ID",
	NotifyInvalidSPI:                  "INVALID_SPI",
	NotifyNoProposalChosen:            "NO_PROPOSAL_CHOSEN",
	NotifyInvalidKEPayload:            "INVALID_KE_PAYLOAD",
	NotifyAuthenticationFailed:        "AUTHENTICATION_FAILED",
	NotifySinglePairRequired:          "SINGLE_PAIR_REQUIRED",
	NotifyNoAdditionalSAs:             "NO_ADDITIONAL_SAS",
	NotifyInternalAddressFailure:      "INTERNAL_ADDRESS_FAILURE",
	NotifyFailedCPRequired:            "FAILED_CP_REQUIRED",
	NotifyTSUnacceptable:              "TS_UNACCEPTABLE",
	NotifyInvalidSelectors:            "INVALID_SELECTORS",
	NotifyUnacceptableAddresses:       "UNACCEPTABLE_ADDRESSES",
	NotifyUnexpectedNATDetected:       "UNEXPECTED_NAT_DETECTED",
	NotifyTemporaryFailure:            "TEMPORARY_FAILURE",
	NotifyChildSANotFound:             "CHILD_SA_NOT_FOUND",
	NotifyInitialContact:              "INITIAL_CONTACT",
	NotifySetWindowSize:               "SET_WINDOW_SIZE",
	NotifyAdditionalTSPossible:        "ADDITIONAL_TS_POSSIBLE",
	NotifyIPCompSupported:             "IPCOMP_SUPPORTED",
	NotifyNATDetectionSourceIP:        "NAT_DETECTION_SOURCE_IP",
	NotifyNATDetectionDestinationIP:   "NAT_DETECTION_DESTINATION_IP",
	NotifyCookie:                      "COOKIE",
	NotifyUseTransportMode:            "USE_TRANSPORT_MODE",
	NotifyHTTPCertLookupSupported:     "HTTP_CERT_LOOKUP_SUPPORTED",
	NotifyRekeySA:                     "REKEY_SA",
	NotifyESPTFCPaddingNotSupported:   "ESP_TFC_PADDING_NOT_SUPPORTED",
	NotifyNonFirstFragmentsAlso:       "NON_FIRST_FRAGMENTS_ALSO",
	NotifyMOBIKESupported:             "MOBIKE_SUPPORTED",
	NotifyAdditionalIP4Address:        "ADDITIONAL_IP4_ADDRESS",
	NotifyAdditionalIP6Address:        "ADDITIONAL_IP6_ADDRESS",
	NotifyNoAdditionalAddresses:       "NO_ADDITIONAL_ADDRESSES",
	NotifyUpdateSAAddresses:           "UPDATE_SA_ADDRESSES",
	NotifyCookie2:                     "COOKIE2",
	NotifyNoNATsAllowed:               "NO_NATS_ALLOWED",
	NotifyMultipleAuthSupported:       "MULTIPLE_AUTH_SUPPORTED",
	NotifyAnotherAuthFollows:          "ANOTHER_AUTH_FOLLOWS",
	NotifyRedirectSupported:           "REDIRECT_SUPPORTED",
	NotifyChildlessIKEv2Supported:     "CHILDLESS_IKEV2_SUPPORTED",
	NotifyIKEv2FragmentationSupported: "IKEV2_FRAGMENTATION_SUPPORTED",
	NotifySignatureHashAlgorithms:     "SIGNATURE_HASH_ALGORITHMS",
}

func (t NotifyType) String() string {
	if s, ok := notifyNames[t]; ok {
		return s
	}
	return "notify(" + strconv.Itoa(int(t)) + ")"
}

// IsError reports whether t is an error type (0..16383).
func (t NotifyType) IsError() bool { return t < 16384 }

// TransformType is a transform's type (RFC 7296 §3.3.2).
type TransformType uint8

const (
	TransformENCR  TransformType = 1
	TransformPRF   TransformType = 2
	TransformINTEG TransformType = 3
	TransformDH    TransformType = 4
	TransformESN   TransformType = 5
)

func (t TransformType) String() string {
	switch t {
	case TransformENCR:
		return "ENCR"
	case TransformPRF:
		return "PRF"
	case TransformINTEG:
		return "INTEG"
	case TransformDH:
		return "DH"
	case TransformESN:
		return "ESN"
	}
	return "transform-type(" + strconv.Itoa(int(t)) + ")"
}

// Transform IDs used by the default IKE proposal (IANA IKEv2 registries).
const (
	EncrAESCBC    uint16 = 12
	EncrAESGCM16  uint16 = 20
	PRFHMACSHA1   uint16 = 2
	PRFHMACSHA256 uint16 = 5
	IntegNone     uint16 = 0
	IntegSHA256   uint16 = 12
)

// DHGroup is a Diffie-Hellman group number (transform type 4).
type DHGroup uint16

const (
	DHModp2048   DHGroup = 14
	DHECP256     DHGroup = 19
	DHECP384     DHGroup = 20
	DHCurve25519 DHGroup = 31
)

func (g DHGroup) String() string {
	switch g {
	case DHModp2048:
		return "MODP_2048"
	case DHECP256:
		return "ECP_256"
	case DHECP384:
		return "ECP_384"
	case DHCurve25519:
		return "CURVE_25519"
	}
	return "dh(" + strconv.Itoa(int(g)) + ")"
}

// AttrKeyLength is the Key Length transform attribute (TV format).
const AttrKeyLength uint16 = 14

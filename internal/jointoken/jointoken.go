// Package jointoken verifies the signed join tokens (JWT) that admit a
// client to a session stream or a chat thread: which session ids it may
// join, with which identity, until when. Verification is done once per
// upgrade (or refresh); what a connection keeps afterwards is Claims.
package jointoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Reasons a token is refused; they are the "error" field of the 401 body.
const (
	ReasonMissing      = "token_missing"
	ReasonMalformed    = "token_malformed"
	ReasonSignature    = "token_signature_invalid"
	ReasonAlgorithm    = "token_algorithm_not_allowed"
	ReasonExpired      = "token_expired"
	ReasonNotYetValid  = "token_not_yet_valid"
	ReasonAudience     = "token_audience_invalid"
	ReasonClaims       = "token_claims_invalid"
	ReasonWrongSession = "token_session_mismatch"
	maxTokenLen        = 8 << 10
	maxSIDs            = 64
	maxTypeLen         = 64
	maxSubjectLen      = 256
)

// Error is a refused token; Reason is one of the Reason* constants.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(reason string, err error) *Error { return &Error{Reason: reason, Err: err} }

// Config holds the keys; at least one must be set.
type Config struct {
	// Secret is the HS256 key (SESSION_TOKEN_SECRET).
	Secret []byte
	// PublicKeyPEM is an RSA (RS256) or ECDSA P-256 (ES256) public key
	// (SESSION_TOKEN_PUBLIC_KEY, read from its file by cmd/wsedge).
	PublicKeyPEM []byte
	// Audience, when set, must be among the token's aud values.
	Audience string
}

// Verifier checks tokens against fixed keys and algorithms. It is safe for
// concurrent use.
type Verifier struct {
	// The keys as the jwt library takes them, converted once rather than
	// on every verification.
	hmac   any // []byte
	rsa    any // *rsa.PublicKey
	ec     any // *ecdsa.PublicKey
	parser *jwt.Parser
	cache  *tokenCache // tokens that verified (cache.go)
	now    func() time.Time
}

// New builds a Verifier. The allowed algorithms follow from the keys given:
// HS256 with a secret, RS256 with an RSA key, ES256 with a P-256 key; any
// other "alg" (none included) is refused before a key is looked at.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{now: time.Now, cache: newTokenCache(cacheMaxTokens, cacheMaxBytes, cacheTTL)}
	var algs []string
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < 32 {
			return nil, errors.New("session token secret must be at least 32 bytes")
		}
		v.hmac = append([]byte(nil), cfg.Secret...)
		algs = append(algs, "HS256")
	}
	if len(cfg.PublicKeyPEM) > 0 {
		if k, err := jwt.ParseRSAPublicKeyFromPEM(cfg.PublicKeyPEM); err == nil {
			if k.N.BitLen() < 2048 {
				return nil, errors.New("session token RSA key must be at least 2048 bits")
			}
			v.rsa = k
			algs = append(algs, "RS256")
		} else if k, err2 := jwt.ParseECPublicKeyFromPEM(cfg.PublicKeyPEM); err2 == nil {
			if k.Curve.Params().Name != "P-256" {
				return nil, fmt.Errorf("session token ECDSA key is on %s; ES256 needs P-256", k.Curve.Params().Name)
			}
			v.ec = k
			algs = append(algs, "ES256")
		} else {
			return nil, fmt.Errorf("session token public key: not an RSA or ECDSA public key in PEM: %w", err2)
		}
	}
	if len(algs) == 0 {
		return nil, errors.New("session tokens need a secret or a public key")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Claims is what a connection keeps of a verified token.
type Claims struct {
	// SIDs are the session (or thread) ids the token covers; one ending in
	// '*' covers every id with that prefix.
	SIDs       []string
	UserType   string
	ClientType string // "" when the token does not fix it
	Subject    string
	Expires    time.Time
}

// Covers reports whether the token admits session id.
func (c *Claims) Covers(id string) bool {
	for _, s := range c.SIDs {
		if p, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(id, p) {
				return true
			}
		} else if s == id {
			return true
		}
	}
	return false
}

// SameIdentity reports whether o names the same user_type, client_type and
// subject: a refresh may extend a connection, not change who it is.
func (c *Claims) SameIdentity(o *Claims) bool {
	return c.UserType == o.UserType && c.ClientType == o.ClientType && c.Subject == o.Subject
}

// tokenClaims is the JSON shape of a join token.
type tokenClaims struct {
	jwt.RegisteredClaims
	SID        json.RawMessage `json:"sid"`
	UserType   string          `json:"user_type"`
	ClientType string          `json:"client_type"`
}

// Verify checks a token's signature, algorithm and time claims and decodes
// the join claims. The error is always an *Error. A token that verified in
// the last minute (and has not expired since) is answered from the cache
// (cache.go); the Claims returned are the caller's own copy.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, refuse(ReasonMissing, errors.New("no token in ?token= or Authorization: Bearer"))
	}
	if len(token) > maxTokenLen {
		return nil, refuse(ReasonMalformed, fmt.Errorf("token longer than %d bytes", maxTokenLen))
	}
	now := v.now()
	if c, ok := v.cache.get(token, now); ok {
		return c, nil
	}
	c, err := v.verify(token)
	if err != nil {
		return nil, err
	}
	v.cache.put(token, c, now)
	cp := *c
	return &cp, nil
}

// verify is Verify without the cache.
func (v *Verifier) verify(token string) (*Claims, error) {
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.key)
	if err != nil {
		return nil, classify(err)
	}
	c := &Claims{UserType: tc.UserType, ClientType: tc.ClientType, Subject: tc.Subject, Expires: tc.ExpiresAt.Time}
	c.SIDs, err = decodeSIDs(tc.SID)
	switch {
	case err != nil:
		return nil, refuse(ReasonClaims, err)
	case tc.UserType == "" || len(tc.UserType) > maxTypeLen:
		return nil, refuse(ReasonClaims, errors.New("user_type must be a non-empty string of at most 64 bytes"))
	case len(tc.ClientType) > maxTypeLen:
		return nil, refuse(ReasonClaims, errors.New("client_type must be at most 64 bytes"))
	case len(tc.Subject) > maxSubjectLen:
		return nil, refuse(ReasonClaims, errors.New("sub must be at most 256 bytes"))
	}
	return c, nil
}

// key picks the key for the token's algorithm; the parser has already
// refused algorithms outside the allowed list.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case "HS256":
		return v.hmac, nil
	case "RS256":
		return v.rsa, nil
	case "ES256":
		return v.ec, nil
	}
	return nil, jwt.ErrTokenSignatureInvalid
}

func decodeSIDs(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("sid is required: a session id or a list of them")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil, errors.New("sid must not be empty")
		}
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("sid must be a string or a list of strings")
	}
	if len(many) == 0 || len(many) > maxSIDs {
		return nil, fmt.Errorf("sid must list 1 to %d ids", maxSIDs)
	}
	for _, s := range many {
		if s == "" {
			return nil, errors.New("sid must not contain an empty id")
		}
	}
	return many, nil
}

func classify(err error) *Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(ReasonMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		return refuse(ReasonAlgorithm, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(ReasonSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(ReasonExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse(ReasonNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(ReasonAudience, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ReasonClaims, err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(ReasonAlgorithm, err)
	}
	return refuse(ReasonClaims, err)
}

// FromAuthorization returns the token of an "Authorization: Bearer <jwt>"
// value (scheme in any case), or "".
func FromAuthorization(h []byte) string {
	h = bytes.TrimSpace(h)
	if len(h) > 7 && bytes.EqualFold(h[:7], []byte("bearer ")) {
		return string(bytes.TrimSpace(h[7:]))
	}
	return ""
}

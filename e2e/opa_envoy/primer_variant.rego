# The primer (primer.rego) with its token builtins replaced by a fixed table, so
# the stack's plumbing is tested without io.jwt.decode_verify and base64url.decode.
package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

allow if {
	is_token_valid
	action_allowed
}

is_token_valid if token.valid

action_allowed if {
	http.method == "GET"
	token.payload.role == "guest"
	glob.match("/people/*", ["/"], http.path)
}

action_allowed if {
	http.method == "POST"
	token.payload.role == "admin"
	glob.match("/people", ["/"], http.path)
	lower(input.parsed_body.firstname) != token.payload.sub
}

tokens := {
	"guest-token": {"role": "guest", "sub": "alice"},
	"admin-token": {"role": "admin", "sub": "bob"},
}

token := {"valid": true, "payload": tokens[encoded]} if {
	[_, encoded] := split(http.headers.authorization, " ")
}

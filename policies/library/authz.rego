# A1 reference tenant policy.
#
# Input (built by the sidecar from the request and the claims that Envoy's
# jwt_authn filter verified):
#   input.method            HTTP method
#   input.path              request path, without the query string
#   input.tenant            target tenant (the tenant whose cell serves the request), or absent
#   input.subject.sub       caller subject (JWT `sub`)
#   input.subject.tenant    caller tenant (JWT claim)
#   input.subject.roles     caller roles (JWT claim), e.g. ["reader", "writer"]
# Data:
#   data.a1.tenants.suspended   set of suspended tenant ids
package a1.authz

import rego.v1

read_methods := {"GET", "HEAD"}

write_methods := {"POST", "PUT", "PATCH", "DELETE"}

default allow := false

# Open content: anybody may read /public/.
allow if {
	input.method in read_methods
	startswith(input.path, "/public/")
}

allow if {
	not suspended
	is_admin
}

allow if {
	not suspended
	same_tenant
	some role in input.subject.roles
	input.method in permitted[role]
}

permitted := {
	"reader": read_methods,
	"writer": read_methods | write_methods,
}

is_admin if "admin" in input.subject.roles

same_tenant if {
	input.tenant != ""
	input.tenant == input.subject.tenant
}

suspended if input.tenant in data.a1.tenants.suspended

suspended if input.subject.tenant in data.a1.tenants.suspended

reason := "tenant suspended" if {
	not allow
	suspended
} else := "cross-tenant request" if {
	not allow
	not is_admin
	input.tenant != input.subject.tenant
} else := "no role permits this method" if {
	not allow
} else := "allowed"

status := 200 if allow

else := 403

decision := {
	"allow": allow,
	"status": status,
	"reason": reason,
	"headers": {"x-a1-subject": subject_id},
}

default subject_id := ""

subject_id := input.subject.sub if is_string(input.subject.sub)

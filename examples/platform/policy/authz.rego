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
# Roles: reader (GET, HEAD), writer (also POST, PUT, PATCH, DELETE) and admin
# (any method), all within the caller's own tenant; platform-admin, any method
# in any tenant.
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

# A platform admin may act in any tenant (never a suspended one).
allow if {
	not suspended
	is_platform_admin
}

# A tenant admin may do anything, but only within their own tenant.
allow if {
	not suspended
	same_tenant
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

is_platform_admin if "platform-admin" in input.subject.roles

same_tenant if {
	input.tenant != ""
	input.tenant == input.subject.tenant
}

# A request for a tenant that is not the caller's own, by anyone but a platform admin.
cross_tenant if {
	not is_platform_admin
	input.tenant != ""
	not same_tenant
}

suspended if input.tenant in data.a1.tenants.suspended

suspended if input.subject.tenant in data.a1.tenants.suspended

# The cross-tenant check comes first: a caller learns nothing about another
# tenant (not even whether it is suspended) beyond "not yours".
reason := "cross-tenant request" if {
	not allow
	cross_tenant
} else := "tenant suspended" if {
	not allow
	suspended
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

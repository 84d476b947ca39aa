package a1.authz_test

import data.a1.authz
import rego.v1

reader := {"sub": "u1", "tenant": "acme", "roles": ["reader"]}

writer := {"sub": "u2", "tenant": "acme", "roles": ["reader", "writer"]}

admin := {"sub": "boss", "tenant": "acme", "roles": ["admin"]}

platform_admin := {"sub": "ops", "tenant": "platform", "roles": ["platform-admin"]}

test_reader_reads_own_tenant if {
	authz.allow with input as {"method": "GET", "path": "/t/acme/items", "tenant": "acme", "subject": reader}
}

test_reader_cannot_write if {
	not authz.allow with input as {"method": "POST", "path": "/t/acme/items", "tenant": "acme", "subject": reader}
}

test_writer_writes_own_tenant if {
	authz.allow with input as {"method": "DELETE", "path": "/t/acme/items/1", "tenant": "acme", "subject": writer}
}

test_cross_tenant_denied if {
	d := authz.decision with input as {"method": "GET", "path": "/t/other/items", "tenant": "other", "subject": writer}
	d.allow == false
	d.status == 403
	d.reason == "cross-tenant request"
}

test_admin_within_own_tenant if {
	authz.allow with input as {"method": "PUT", "path": "/t/acme/items/3", "tenant": "acme", "subject": admin}
}

test_admin_not_in_other_tenants if {
	d := authz.decision with input as {"method": "PUT", "path": "/t/other/items/3", "tenant": "other", "subject": admin}
	not d.allow
	d.reason == "cross-tenant request"
}

test_admin_of_no_tenant_is_no_admin if {
	not authz.allow with input as {"method": "GET", "path": "/t/acme/items", "tenant": "acme", "subject": {"sub": "x", "roles": ["admin"]}}
}

test_platform_admin_anywhere if {
	authz.allow with input as {"method": "PUT", "path": "/t/other/items/3", "tenant": "other", "subject": platform_admin}
}

test_platform_admin_not_in_suspended_tenant if {
	d := authz.decision with input as {"method": "GET", "path": "/t/suspended-co/items", "tenant": "suspended-co", "subject": platform_admin}
	not d.allow
	d.reason == "tenant suspended"
}

test_cross_tenant_hides_suspension if {
	d := authz.decision with input as {"method": "GET", "path": "/t/suspended-co/items", "tenant": "suspended-co", "subject": admin}
	not d.allow
	d.reason == "cross-tenant request"
}

test_suspended_denied if {
	d := authz.decision with input as {"method": "GET", "path": "/t/suspended-co/items", "tenant": "suspended-co", "subject": {"sub": "s", "tenant": "suspended-co", "roles": ["reader"]}}
	not d.allow
	d.reason == "tenant suspended"
}

test_public_open if {
	authz.allow with input as {"method": "GET", "path": "/public/readme"}
}

test_public_write_closed if {
	not authz.allow with input as {"method": "POST", "path": "/public/readme"}
}

test_decision_headers if {
	d := authz.decision with input as {"method": "GET", "path": "/t/acme/items", "tenant": "acme", "subject": reader}
	d.headers["x-a1-subject"] == "u1"
	d.status == 200
}

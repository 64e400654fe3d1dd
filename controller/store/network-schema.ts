/**
 * The network tables (see docs/architecture.md, Networks): networks,
 * subnets, ports and their addresses, security groups, and the revision
 * hosts' networks follow. Part of the schema history in migrations.ts.
 */
import { CREATED_NOW as TS, type Migration } from "./db.js";

export const NETWORK_MIGRATIONS: readonly Migration[] = [
  {
    version: 14,
    name: "networks, subnets, ports with their addresses, security groups",
    statements: [
      `CREATE TABLE networks (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        shared TINYINT(1) NOT NULL DEFAULT 0,
        segmentation VARCHAR(16) NOT NULL,
        physical_network VARCHAR(64) NOT NULL DEFAULT '',
        vni INT NULL UNIQUE,
        mtu INT NOT NULL,
        port_security TINYINT(1) NOT NULL DEFAULT 1,
        created_at ${TS},
        KEY networks_project (project_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE subnets (
        id CHAR(36) NOT NULL PRIMARY KEY,
        network_id CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        name VARCHAR(255) NOT NULL DEFAULT '',
        cidr VARCHAR(18) NOT NULL,
        first_address INT UNSIGNED NOT NULL,
        last_address INT UNSIGNED NOT NULL,
        gateway_ip VARCHAR(15) NULL,
        allocation_pools JSON NOT NULL,
        dns_nameservers JSON NOT NULL,
        host_routes JSON NOT NULL,
        enable_dhcp TINYINT(1) NOT NULL,
        created_at ${TS},
        KEY subnets_network (network_id),
        CONSTRAINT subnets_network FOREIGN KEY (network_id) REFERENCES networks (id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE ports (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL DEFAULT '',
        network_id CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        mac_address CHAR(17) NOT NULL,
        device_id CHAR(36) NULL,
        device_owner VARCHAR(64) NOT NULL DEFAULT '',
        dhcp_host VARCHAR(255) NULL,
        position INT NOT NULL DEFAULT 0,
        auto_delete TINYINT(1) NOT NULL DEFAULT 0,
        port_security TINYINT(1) NOT NULL DEFAULT 1,
        created_at ${TS},
        UNIQUE KEY ports_mac (network_id, mac_address),
        UNIQUE KEY ports_dhcp (network_id, dhcp_host),
        KEY ports_device (device_id),
        CONSTRAINT ports_network FOREIGN KEY (network_id) REFERENCES networks (id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE ip_allocations (
        subnet_id CHAR(36) NOT NULL,
        address INT UNSIGNED NOT NULL,
        port_id CHAR(36) NOT NULL,
        PRIMARY KEY (subnet_id, address),
        KEY ip_allocations_port (port_id),
        CONSTRAINT ip_allocations_subnet FOREIGN KEY (subnet_id) REFERENCES subnets (id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE security_groups (
        id CHAR(36) NOT NULL PRIMARY KEY,
        project_id VARCHAR(64) NOT NULL,
        name VARCHAR(255) NOT NULL,
        description VARCHAR(255) NOT NULL DEFAULT '',
        default_of VARCHAR(64) NULL UNIQUE,
        created_at ${TS},
        KEY security_groups_project (project_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE security_group_rules (
        id CHAR(36) NOT NULL PRIMARY KEY,
        security_group_id CHAR(36) NOT NULL,
        direction VARCHAR(8) NOT NULL,
        protocol VARCHAR(8) NOT NULL,
        port_min INT NULL,
        port_max INT NULL,
        remote_cidr VARCHAR(18) NOT NULL DEFAULT '',
        remote_group_id CHAR(36) NULL,
        description VARCHAR(255) NOT NULL DEFAULT '',
        rule_key VARCHAR(160) NOT NULL,
        created_at ${TS},
        UNIQUE KEY security_group_rules_key (security_group_id, rule_key),
        KEY security_group_rules_remote (remote_group_id),
        CONSTRAINT security_group_rules_group FOREIGN KEY (security_group_id) REFERENCES security_groups (id) ON DELETE CASCADE
      ) ENGINE=InnoDB`,
      `CREATE TABLE port_security_groups (
        port_id CHAR(36) NOT NULL,
        security_group_id CHAR(36) NOT NULL,
        PRIMARY KEY (port_id, security_group_id),
        KEY port_security_groups_group (security_group_id),
        CONSTRAINT port_security_groups_port FOREIGN KEY (port_id) REFERENCES ports (id) ON DELETE CASCADE,
        CONSTRAINT port_security_groups_group FOREIGN KEY (security_group_id) REFERENCES security_groups (id)
      ) ENGINE=InnoDB`,
      `ALTER TABLE instances ADD COLUMN requested_networks JSON NULL`,
      `ALTER TABLE instance_actions ADD COLUMN port_id CHAR(36) NULL`,
      `ALTER TABLE compute_nodes ADD COLUMN tunnel_ip VARCHAR(45) NOT NULL DEFAULT ''`,
      // One row per change to what hosts plug (ports, rules, tunnel addresses): hosts' network views follow MAX(id).
      `CREATE TABLE network_changes (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        created_at ${TS}
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 17,
    name: "a subnet's allocation floor; a network change records what it touched",
    statements: [
      // Every address of the subnet's pools below it is taken: allocation searches from there.
      `ALTER TABLE subnets ADD COLUMN alloc_floor INT UNSIGNED NOT NULL DEFAULT 0`,
      // What a change touched (conductor/network-sync.ts recomputes only the hosts it concerns); '' concerns every host.
      `ALTER TABLE network_changes
         ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT '',
         ADD COLUMN ref VARCHAR(255) NOT NULL DEFAULT '',
         ADD KEY network_changes_created (created_at)`,
    ],
  },
];

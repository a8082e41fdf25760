-- Least privilege (docs/least-privilege.md): each service logs in as its own role.
-- Each bank participant owns only its database; the coordinator owns only the txcoord schema
-- of the journal database; the dashboard's monitor reads server statistics (pg_monitor) and
-- may connect to the bank databases, but read nothing in them. Nobody else may connect.
-- Demo passwords: change them (and the connection strings in docker-compose.yml) anywhere else.
CREATE ROLE txcoord_bank_a LOGIN PASSWORD 'bank-a-demo-password';
CREATE ROLE txcoord_bank_b LOGIN PASSWORD 'bank-b-demo-password';
CREATE ROLE txcoord_coordinator LOGIN PASSWORD 'coordinator-demo-password';
CREATE ROLE txcoord_monitor LOGIN PASSWORD 'monitor-demo-password' IN ROLE pg_monitor;

ALTER DATABASE bank_a OWNER TO txcoord_bank_a;
ALTER DATABASE bank_b OWNER TO txcoord_bank_b;
REVOKE ALL ON DATABASE bank_a, bank_b, txcoord_coordinator FROM PUBLIC;
GRANT CONNECT ON DATABASE bank_a, bank_b TO txcoord_monitor;
GRANT CONNECT ON DATABASE txcoord_coordinator TO txcoord_coordinator;

\connect txcoord_coordinator
CREATE SCHEMA txcoord AUTHORIZATION txcoord_coordinator;

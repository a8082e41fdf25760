-- Same databases as scripts/services.sh creates: the coordinator's journal and the two
-- bank participants of the sample.
CREATE DATABASE txcoord_coordinator;
CREATE DATABASE bank_a;
CREATE DATABASE bank_b;

-- identity-service and event-service keep separate databases: each has its own migration history.
-- The image creates POSTGRES_DB (identity); this creates the other.
CREATE DATABASE events OWNER tollgate;

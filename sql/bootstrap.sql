-- Runs first in the extension script. The control file puts everything in schema "boundary";
-- if that schema already existed (CREATE EXTENSION then adopts it), whoever owns it could later
-- drop or replace this extension's functions, and objects already in it could shadow ours.
-- Refuse to install into a schema that is not empty, or owned by a role that is neither the
-- installer nor a superuser. (pg_dump writes the schema before CREATE EXTENSION, owned by the
-- superuser who installed it; another superuser restoring the dump adopts it, empty.)
DO $bootstrap$
DECLARE
    owner_name name;
    owner_is_superuser boolean;
    objects bigint;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(n.nspowner), r.rolsuper INTO owner_name, owner_is_superuser
      FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = 'boundary';
    SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_operator WHERE oprnamespace = 'boundary'::regnamespace)
      INTO objects;
    IF (owner_name IS DISTINCT FROM current_user AND owner_is_superuser IS NOT TRUE) OR objects > 0 THEN
        RAISE EXCEPTION 'schema "boundary" already exists (owner %, % objects); agent_boundary will not install into it',
                        owner_name, objects
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Find out who created schema "boundary" and why, drop or rename it, then run CREATE EXTENSION again.';
    END IF;
END
$bootstrap$;

-- pgvector 0.5.0 brought HNSW indexes, which vector_index() builds and vector_search() plans
-- with; older releases are refused here rather than at the first large tenant's search.
-- (Iterative index scans, 0.8.0, are used when present: see vector_search.)
DO $pgvector$
DECLARE
    installed text := (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector');
BEGIN
    IF pg_catalog.string_to_array(pg_catalog.substring(installed, '^[0-9]+(?:\.[0-9]+)*'), '.')::int[]
       < ARRAY[0, 5, 0] THEN
        RAISE EXCEPTION 'agent_boundary needs pgvector 0.5.0 or later; this database has pgvector %', installed
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Install a newer pgvector, run ALTER EXTENSION vector UPDATE, then CREATE EXTENSION agent_boundary again.';
    END IF;
END
$pgvector$;

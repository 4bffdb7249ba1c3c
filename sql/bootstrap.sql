-- Runs first in the extension script. The control file puts everything in schema "boundary";
-- if that schema already existed (CREATE EXTENSION then adopts it), whoever owns it could later
-- drop or replace this extension's functions, and objects already in it could shadow ours.
-- Refuse to install into a schema that is not the installer's, or not empty.
DO $bootstrap$
DECLARE
    owner_name name;
    objects bigint;
BEGIN
    SELECT pg_catalog.pg_get_userbyid(n.nspowner) INTO owner_name
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'boundary';
    SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = 'boundary'::regnamespace)
         + (SELECT count(*) FROM pg_catalog.pg_operator WHERE oprnamespace = 'boundary'::regnamespace)
      INTO objects;
    IF owner_name IS DISTINCT FROM current_user OR objects > 0 THEN
        RAISE EXCEPTION 'schema "boundary" already exists (owner %, % objects); agent_boundary will not install into it',
                        owner_name, objects
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'Find out who created schema "boundary" and why, drop or rename it, then run CREATE EXTENSION again.';
    END IF;
END
$bootstrap$;

-- An API key may be limited to some projects: a JSON array of project ids, or NULL for a key
-- that sees every project (all keys made before this migration).
ALTER TABLE api_keys ADD COLUMN projects TEXT;

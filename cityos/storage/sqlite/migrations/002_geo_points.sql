-- Exact coordinates of Point GeoProperties, and the tenant, beside each index entry: the
-- R-tree keeps 32-bit bounds, so a query on Points can be answered from this table alone,
-- without reading any Entity.
ALTER TABLE geo_index ADD COLUMN px REAL;
ALTER TABLE geo_index ADD COLUMN py REAL;
ALTER TABLE geo_index ADD COLUMN tenant TEXT
;
UPDATE geo_index SET tenant = (SELECT tenant FROM entities WHERE entities.rowid = geo_index.entity_rowid)

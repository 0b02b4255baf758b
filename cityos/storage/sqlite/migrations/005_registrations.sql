-- Context source registrations (GS CIM 009 clause 5.2.9) in their stored form: the JSON of
-- cityos/core/registrations.py Registration.to_doc, names expanded, values as given.
CREATE TABLE csource_registrations (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
)

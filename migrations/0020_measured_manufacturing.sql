-- Measured manufacturing estimates (issue 17): a material without a catalog estimate takes the median of
-- its latest measured stays in MANUFACTURING_STARTED once there are enough (projectors/measured.py), not the
-- cautious two days. mes.manufacturing_completions keeps one row per order that left MANUFACTURING_STARTED:
-- its time there, hold time excluded, and when it left; the index serves the latest completions of a
-- material. mes.manufacturing_estimates says where each estimate in use comes from; the rows before this
-- migration all came from the catalog.
-- depends: 0019_webhook_dropped

CREATE TABLE mes.manufacturing_completions (
    order_id uuid PRIMARY KEY,
    material_code text NOT NULL,
    seconds bigint NOT NULL CHECK (seconds > 0),
    finished_at timestamptz NOT NULL
);

CREATE INDEX mes_manufacturing_completions_latest
    ON mes.manufacturing_completions (material_code, finished_at DESC);

ALTER TABLE mes.manufacturing_estimates
    ADD COLUMN source text NOT NULL DEFAULT 'catalog' CHECK (source IN ('catalog', 'measured'));

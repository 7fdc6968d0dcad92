-- Completions of manufacturing counted per material, kept by the MES projection as it records them:
-- GET /mes/manufacturing-estimates counted them from mes.manufacturing_completions on every call, which
-- took 0.5 s at 780,000 completions (bench/search.py).
-- depends: 0020_measured_manufacturing

CREATE TABLE mes.manufacturing_completion_counts (
    material_code text PRIMARY KEY,
    completions bigint NOT NULL CHECK (completions > 0)
);

INSERT INTO mes.manufacturing_completion_counts (material_code, completions)
SELECT material_code, count(*) FROM mes.manufacturing_completions GROUP BY material_code;

"""Raw datasets -> the preprocessed-data contract (mindvis.data.contract): one reader per dataset (hcp, god,
bold5000; grayordinates reads HCP CIFTI-2 files) and the pure numpy transforms they share (normalize, average,
windows: arrays in, arrays out)."""

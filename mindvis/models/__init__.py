"""Plain nn.Modules: the masked brain model (mbm), the conditioning and the LDM assembly."""

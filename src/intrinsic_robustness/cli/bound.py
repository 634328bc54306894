"""Placeholder: the bound helper replaces this module with `irob bound`."""

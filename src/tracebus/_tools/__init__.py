"""Tools that read runs back."""

"""acrux ChatRoom routing plugin hooks (not yet implemented: registers nothing)."""

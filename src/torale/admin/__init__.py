"""The admin API (role admin): who uses the instance, what runs, what fails."""

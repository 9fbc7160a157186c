"""What the platform serves to browsers: the customer dashboard's static files."""

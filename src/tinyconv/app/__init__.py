"""The application: the command line, and the pictures and pages it makes."""

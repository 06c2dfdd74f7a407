"""The staff side: specialists and admins, under /staff/ (issue 11, DESIGN.md "Staff")."""

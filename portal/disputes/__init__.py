"""Line-item disputes: the customer contests a charge and keeps paying the rest; staff
accept it (a credit note), accept it in part, reject it, or ask for information."""

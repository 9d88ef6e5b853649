export default function status(_req, res) {
  res.status(200).json({ status: 'ok', worker: process.pid });
}
